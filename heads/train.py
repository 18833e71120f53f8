"""Fit the heads on a feature file's training part, tune them on its validation part, score the test part."""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import ParameterGrid

import modelfiles
from evaluation.metrics import evaluate, evaluate_baselines, macro_map
from evaluation.results import write_result, write_scores
from extract.features import Features, fingerprint_differences
from heads.estimators import HEADS
from posters.data import DataError


def tune(estimator: BaseEstimator, grid: dict, X_train: np.ndarray, Y_train: np.ndarray, X_val: np.ndarray,
         Y_val: np.ndarray) -> tuple[BaseEstimator, dict, list[dict]]:
    """The estimator of `grid` with the best validation macro mAP, its parameters, and every trial."""
    best, best_params, best_map, trials = None, {}, -1.0, []
    for params in ParameterGrid(grid):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = clone(estimator).set_params(**params).fit(X_train, Y_train)
        val_map = macro_map(Y_val, model.predict_proba(X_val))
        trials.append({"params": params, "val_mAP_macro": val_map})
        if val_map > best_map:
            best, best_params, best_map = model, params, val_map
    return best, best_params, trials


def save_head(path: Path | str, estimator: BaseEstimator, features: Features, params: dict,
              thresholds: list[float]) -> None:
    """The head with what `make predict` needs: the features it expects and its validation thresholds."""
    modelfiles.save_head(path, estimator, {
        "genres": features.genres, "fingerprint": features.fingerprint(), "params": params,
        "thresholds": thresholds, "batch_size": int(features.attrs["batch_size"])})


def load_head(path: Path | str, features: Features) -> BaseEstimator:
    """The head saved at `path`, refused unless it was fitted on features like these."""
    estimator, settings = modelfiles.read_head(path)
    differences = fingerprint_differences(settings.get("fingerprint", {}), features.fingerprint())
    if differences:
        raise DataError(f"{path}: fitted on other features than {features.attrs.get('dataset')} "
                        f"({differences}); refit it with `make heads`")
    return estimator


def run_heads(features: Features, heads: list[str], models_dir: Path | str, results_dir: Path | str,
              per_genre_thresholds: bool = False) -> dict[str, dict]:
    dataset, backbone = features.attrs["dataset"], features.attrs["backbone"]
    (X_train, Y_train), (X_val, Y_val), (X_test, Y_test) = (features.part(p) for p in ("train", "val", "test"))
    setting = {"data": features.attrs["data"], "backbone": backbone,
               "weights_sha256": features.attrs["weights_sha256"],
               "tta": features.attrs["tta"], "split": features.attrs["split"]}
    for name, result in evaluate_baselines(Y_train, Y_val, Y_test, features.genres).items():
        write_result(results_dir, dataset, f"baseline-{name}", {"kind": "baseline", **setting, **result})

    summary = {}
    for name in heads:
        if name not in HEADS:
            raise DataError(f"unknown head {name!r}; choose from {', '.join(HEADS)}")
        estimator, grid = HEADS[name]
        start = time.perf_counter()
        model, params, trials = tune(estimator, grid, X_train, Y_train, X_val, Y_val)
        seconds = time.perf_counter() - start
        scores_val, scores_test = model.predict_proba(X_val), model.predict_proba(X_test)
        result = evaluate(Y_val, scores_val, Y_test, scores_test, features.genres, per_genre_thresholds)
        model_name = f"{backbone}-{name}"
        write_scores(results_dir, dataset, model_name, {
            "val": (features.ids[features.parts == "val"], Y_val, scores_val),
            "test": (features.ids[features.parts == "test"], Y_test, scores_test)})
        save_head(Path(models_dir) / f"{dataset}-{model_name}{modelfiles.HEAD_SUFFIX}", model, features, params,
                  result["thresholds"]["values"])
        write_result(results_dir, dataset, model_name, {
            "kind": "head", **setting, "head": name, "params": params, "grid": trials,
            "tune_seconds": round(seconds, 2), **result})
        summary[model_name] = result
        test = result["test"]["overall"]
        print(f"{dataset} {model_name}: best {params}, test mAP {test['mAP_macro']:.3f}, "
              f"micro-F1 {test['f1_micro']:.3f} ({seconds:.1f} s)")
    return summary
