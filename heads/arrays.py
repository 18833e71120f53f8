"""A fitted head as plain layers, for predicting without scikit-learn (modelfiles/arrays.py writes them,
predict/light.py runs them): the logistic head and the MLP are a StandardScaler then dense layers."""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier, _ConstantPredictor
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from postergenre.heads.estimators import MaskedOneVsRest
from postergenre.modelfiles.arrays import ACTIVATIONS

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
