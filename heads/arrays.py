"""A head as plain arrays, for predicting without scikit-learn (predict/light.py reads them).

The logistic head and the MLP are a StandardScaler then dense layers; their weights go into
`<model>.arrays.safetensors` beside the `.skops` (core.workspace.arrays_path), with the settings predicting
needs and the head file's checksum, so arrays left beside another head file are never used.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier, _ConstantPredictor
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from postergenre.core.files import atomic_write
from postergenre.core.workspace import arrays_path, file_sha256
from postergenre.heads.estimators import MaskedOneVsRest
from postergenre.predict.light import ACTIVATIONS

SATURATED = 1e4  # the logit of a genre with one class in training: its sigmoid is exactly 0 or 1, as scikit-learn's


def head_layers(estimator: object) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]],
                                            list[str]] | None:
    """A fitted head as (mean, scale, [(weights, bias)], activations) where it is a StandardScaler then a
    one-vs-rest logistic regression or an MLP; None for anything else (ML-kNN)."""
    if not isinstance(estimator, Pipeline) or len(estimator.steps) != 2:
        return None
    (_, scaler), (_, model) = estimator.steps
    if not isinstance(scaler, StandardScaler) or scaler.mean_ is None or scaler.scale_ is None:
        return None
    if isinstance(model, MLPClassifier) and model.out_activation_ == "logistic" and model.activation in ACTIVATIONS:
        layers = list(zip(model.coefs_, model.intercepts_))
        return scaler.mean_, scaler.scale_, layers, [model.activation] * (len(layers) - 1) + ["logistic"]
    if not isinstance(model, (OneVsRestClassifier, MaskedOneVsRest)):
        return None
    weights, bias = [], []
    for genre in model.estimators_:
        if isinstance(genre, LogisticRegression) and genre.coef_.shape[0] == 1:
            weights.append(genre.coef_[0])
            bias.append(genre.intercept_[0])
        elif isinstance(genre, _ConstantPredictor):
            weights.append(np.zeros(len(scaler.mean_)))
            bias.append(SATURATED if genre.y_[0] else -SATURATED)
        else:
            return None
    return scaler.mean_, scaler.scale_, [(np.stack(weights, axis=1), np.array(bias))], ["logistic"]


def calibrate_last_layer(estimator: object, slope: np.ndarray, intercept: np.ndarray) -> bool:
    """Fold per-genre Platt scaling (evaluation.calibration.GenreCalibration) into a fitted head's last layer, in
    place: the sigmoid of (slope * z + intercept), z the layer's logit, is its calibrated probability. True where
    the head has such a layer (the logistic head, the MLP); False, and unchanged, otherwise (ML-kNN)."""
    if head_layers(estimator) is None:
        return False
    model = estimator.steps[1][1]
    if isinstance(model, MLPClassifier):
        model.coefs_[-1] *= slope
        model.intercepts_[-1] = model.intercepts_[-1] * slope + intercept
        return True
    for genre, a, b in zip(model.estimators_, slope, intercept):
        if isinstance(genre, LogisticRegression):  # a genre with one class in training stays constant
            genre.coef_ *= a
            genre.intercept_ = genre.intercept_ * a + b
    return True


def save_arrays(head_file: Path | str, estimator: object, settings: dict) -> Path | None:
    """Write the arrays beside a just-saved head file, or remove stale ones if this head has none."""
    path, layers = arrays_path(head_file), head_layers(estimator)
    if layers is None:
        path.unlink(missing_ok=True)
        return None
    mean, scale, dense, activations = layers
    tensors = {"mean": mean, "scale": scale}
    for i, (weights, bias) in enumerate(dense):
        tensors[f"weights{i}"], tensors[f"bias{i}"] = weights, bias
    meta = {key: settings[key] for key in ("genres", "thresholds", "fingerprint", "batch_size", "recall_thresholds")
            if key in settings}
    meta.update(activations=activations, head_sha256=file_sha256(head_file))
    with atomic_write(path) as tmp:
        save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()}, str(tmp),
                  metadata={"postergenre": json.dumps(meta)})
    return path
