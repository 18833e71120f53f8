"""Fit the heads on a feature file's training part, tune them on its validation part, score the test part."""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import f1_score
from sklearn.model_selection import ParameterGrid

from postergenre.core.errors import DataError
from postergenre.core.files import atomic_writes
from postergenre.core.interrupts import interruptible
from postergenre.core.progress import progress
from postergenre.core.runspec import PRIOR_BASELINE, baseline_name, head_name
from postergenre.core.workspace import arrays_path
from postergenre.evaluation.metrics import (choose_thresholds, evaluate, evaluate_baselines, macro_map, prior_scores,
                                            top_k_accuracy)
from postergenre.evaluation.results import OUT_OF_FOLD, write_result, write_scores
from postergenre.evaluation.sets import predict_sets
from postergenre.extract.features import Features, fingerprint_differences
from postergenre.heads.arrays import head_layers
from postergenre.heads.estimators import HEADS, UNION_LOGISTIC
from postergenre.heads.union import Added, Union, plus_added
from postergenre.modelfiles import HEAD_SUFFIX, model_path
from postergenre.modelfiles.arrays import write_arrays
from postergenre.modelfiles.heads import read_head, write_head
from postergenre.posters.split import stratified_folds
from postergenre.posters.union import describe_added


def fit_quietly(estimator: BaseEstimator, X: np.ndarray, Y: np.ndarray) -> BaseEstimator:
    """A fitted clone of `estimator`; the weakest settings of a grid may not converge, and that is no news. Ctrl-C
    or SIGTERM during the fit ends it with KeyboardInterrupt, even where the MLP would catch it and return."""
    with interruptible(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clone(estimator).fit(X, Y)


def tune(estimator: BaseEstimator, grid: dict, X_train: np.ndarray, Y_train: np.ndarray, X_val: np.ndarray,
         Y_val: np.ndarray) -> tuple[BaseEstimator, dict, list[dict]]:
    """The estimator of `grid` with the best validation macro mAP, its parameters, and every trial."""
    best, best_params, best_map, trials = None, {}, -1.0, []
    for params in progress(ParameterGrid(grid), desc="parameter search", unit="setting", leave=False):
        model = fit_quietly(clone(estimator).set_params(**params), X_train, Y_train)
        val_map = macro_map(Y_val, model.predict_proba(X_val))
        trials.append({"params": params, "val_mAP_macro": val_map})
        if val_map > best_map:
            best, best_params, best_map = model, params, val_map
    return best, best_params, trials


def cross_validate(estimator: BaseEstimator, grid: dict, X: np.ndarray, Y: np.ndarray, folds: int = 5,
                   repeats: int = 2, seed: int = 0, inner: tuple[float, float] = (0.8, 0.2),
                   added: Added | None = None, rows: np.ndarray | None = None,
                   groups: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """Repeated stratified k-fold over the posters `rows` (default all), each of `groups` (one label a poster:
    its franchise) in one fold and on one side of each inner split: mean, std and each fold's mAP,
    micro-F1, top-1; and every poster's out-of-fold scores (the mean over repeats; NaN outside `rows`), which
    let an ensemble choose its members on predictions no head made for posters it was fitted on.

    Inside each training fold a stratified `inner` split chooses the parameters (validation mAP) and
    the threshold (validation micro-F1); the held-out fold is only scored. `added(held)` (Union.added)
    gives posters to add to each fit, none of them sharing a title with the rows in the mask `held`.
    """
    rows = np.arange(len(Y)) if rows is None else np.asarray(rows)
    groups = np.arange(len(Y)) if groups is None else np.asarray(groups)
    figures = {"mAP_macro": [], "f1_micro": [], "top1_accuracy": []}
    out_of_fold = np.zeros(Y.shape)
    with progress(total=folds * repeats, desc=f"cross-validation {folds}x{repeats}", unit="fold", leave=False) as bar:
        for repeat in range(repeats):
            for fold in stratified_folds(Y[rows], (1 / folds,) * folds, seed + repeat, groups[rows]):
                held = rows[fold]
                rest = np.setdiff1d(rows, held)
                fit, val = (rest[part] for part in stratified_folds(Y[rest], inner, seed + repeat, groups[rest]))
                X_fit, Y_fit, _ = plus_added(X[fit], Y[fit], added, ~np.isin(np.arange(len(Y)), fit))
                model, _, _ = tune(estimator, grid, X_fit, Y_fit, X[val], Y[val])
                thresholds = choose_thresholds(Y[val], model.predict_proba(X[val]))
                scores = model.predict_proba(X[held])
                out_of_fold[held] += scores / repeats
                figures["mAP_macro"].append(macro_map(Y[held], scores))
                figures["f1_micro"].append(float(f1_score(Y[held], predict_sets(scores, thresholds), average="micro",
                                                          zero_division=0)))
                figures["top1_accuracy"].append(top_k_accuracy(Y[held], scores, 1))
                bar.update()
    out_of_fold[np.setdiff1d(np.arange(len(Y)), rows)] = np.nan
    return {"folds": folds, "repeats": repeats, "inner": f"{inner[0]:g}/{inner[1]:g}",
            **{k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)), "values": v}
               for k, v in figures.items()}}, out_of_fold


def save_head(path: Path | str, estimator: BaseEstimator, features: Features, params: dict,
              thresholds: list[float], final: dict | None = None,
              recall_thresholds: dict[str, float] | None = None, card: str | None = None) -> None:
    """The head with what `make predict` needs: the features it expects and its thresholds; a final model
    (make final) also records how it was chosen and refit, and its recall thresholds (evaluation/recall.py), and
    has its model card (`card`, Markdown) beside it. A logistic or MLP head is also saved as plain arrays
    (modelfiles/arrays.py), which `postergenre predict` reads without scikit-learn, and the head records their
    checksum. The head, its arrays and its card are one unit: an interrupt leaves all of them new or none."""
    settings = {"genres": features.genres, "fingerprint": features.fingerprint(), "params": params,
                "thresholds": thresholds, "batch_size": int(features.attrs["batch_size"]),
                **({"final": final} if final else {}),
                **({"recall_thresholds": recall_thresholds} if recall_thresholds else {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files = [path, arrays_path(path)] + ([path.with_suffix(".md")] if card is not None else [])
    with atomic_writes(files) as (head_tmp, arrays_tmp, *card_tmp):
        layers = head_layers(estimator)
        if layers is None:  # ML-kNN: no arrays, and none of an older head's left beside this one
            arrays_tmp.unlink()
        else:
            settings["arrays_sha256"] = write_arrays(arrays_tmp, *layers)
        write_head(head_tmp, estimator, settings)
        if card is not None:
            card_tmp[0].write_text(card, encoding="utf-8")


def load_head(path: Path | str, features: Features) -> BaseEstimator:
    """The head saved at `path`, refused unless it was fitted on features like these."""
    estimator, settings = read_head(path)
    differences = fingerprint_differences(settings.get("fingerprint", {}), features.fingerprint())
    if differences:
        raise DataError(f"{path}: fitted on other features than {features.attrs.get('dataset')} "
                        f"({differences}); refit it with `make heads`")
    return estimator


def run_heads(features: Features, heads: list[str], models_dir: Path | str, results_dir: Path | str,
              per_genre_thresholds: bool = False, cv: tuple[int, int] | None = None,
              mlknn_neighbours: str = "exact", union: Union | None = None) -> dict[str, dict]:
    """Fit, tune and score each head on the split; with `cv` (folds, repeats), cross-validate it too.
    `mlknn_neighbours` is "exact" or "hnsw" (approximate, for very many posters). With `union`, the
    logistic head is fitted with the other data set's posters added, scored on the same validation and
    test parts (and cross-validated with them added to each training fold)."""
    dataset = features.attrs["dataset"]
    (X_val, Y_val), (X_test, Y_test) = features.part("val"), features.part("test")
    fits, X_fit, Y_fit, union_report = _fits(features, heads, union)
    setting = {"data": features.attrs["data"], "backbone": features.attrs["backbone"],
               "weights_sha256": features.attrs["weights_sha256"],
               "tta": features.attrs["tta"], "split": features.attrs["split"]}
    _write_baselines(features, results_dir, setting)
    ids = {part: features.ids[features.parts == part] for part in ("val", "test")}
    summary = {}
    for model_name, (name, estimator, grid) in fits.items():
        if name == "mlknn" and mlknn_neighbours != "exact":  # a one-value grid entry: results and make final see it
            grid = {**grid, "mlknnhead__neighbours": [mlknn_neighbours]}
        start = time.perf_counter()
        model, params, trials = tune(estimator, grid, X_fit, Y_fit, X_val, Y_val)
        seconds = time.perf_counter() - start
        scores_val, scores_test = model.predict_proba(X_val), model.predict_proba(X_test)
        result = evaluate(Y_val, scores_val, Y_test, scores_test, features.genres, per_genre_thresholds)
        scores = {"val": (ids["val"], Y_val, scores_val), "test": (ids["test"], Y_test, scores_test)}
        save_head(model_path(models_dir, dataset, model_name, HEAD_SUFFIX), model, features, params,
                  result["thresholds"]["values"])
        if cv:
            result["cv"], scores[OUT_OF_FOLD] = _cross_validated(features, estimator, grid, cv, union)
            print(f"{dataset} {model_name}: cross-validated mAP {result['cv']['mAP_macro']['mean']:.3f} "
                  f"± {result['cv']['mAP_macro']['std']:.3f} ({result['cv']['seconds']:.0f} s)")
        write_scores(results_dir, dataset, model_name, scores)
        write_result(results_dir, dataset, model_name, {
            "kind": "head", **setting, "head": name, "params": params, "grid": trials,
            "tune_seconds": round(seconds, 2), **({"union": union_report} if union else {}), **result})
        summary[model_name] = result
        test = result["test"]["overall"]
        print(f"{dataset} {model_name}: best {params}, test mAP {test['mAP_macro']:.3f}, "
              f"micro-F1 {test['f1_micro']:.3f} ({seconds:.1f} s)", flush=True)  # a log shows each head as it ends
    return summary


def _fits(features: Features, heads: list[str], union: Union | None) -> tuple[dict, np.ndarray, np.ndarray,
                                                                               dict | None]:
    """model name -> (head, estimator, grid) of each head to fit, and what they learn from: the training part, or
    with `union` the training part and the other set's posters (then the logistic head alone, and what was added)."""
    backbone = features.attrs["backbone"]
    if unknown := [name for name in heads if name not in HEADS]:
        raise DataError(f"unknown head {unknown[0]!r}; choose from {', '.join(HEADS)}")
    if not union:
        return {head_name(backbone, name): (name, *HEADS[name]) for name in heads}, *features.part("train"), None
    if heads != ["logistic"]:
        raise DataError("a union trains the logistic head only (the MLP and ML-kNN cannot leave out the genres "
                        "a data set does not label)")
    X_fit, Y_fit, report = union.training_set()
    print(f"{features.attrs['dataset']}: {describe_added(report, len(X_fit))}")
    return {head_name(backbone, "logistic", report["dataset"]): ("logistic", *UNION_LOGISTIC)}, X_fit, Y_fit, report


def _write_baselines(features: Features, results_dir: Path | str, setting: dict) -> None:
    """The trivial baselines' results, and the prior's scores, beside the heads'."""
    dataset = features.attrs["dataset"]
    (_, Y_train), (_, Y_val), (_, Y_test) = (features.part(p) for p in ("train", "val", "test"))
    for name, result in evaluate_baselines(Y_train, Y_val, Y_test, features.genres).items():
        write_result(results_dir, dataset, baseline_name(name), {"kind": "baseline", **setting, **result})
    write_scores(results_dir, dataset, PRIOR_BASELINE, {
        part: (features.ids[features.parts == part], Y, prior_scores(Y_train, len(Y)))
        for part, Y in (("val", Y_val), ("test", Y_test))})


def _cross_validated(features: Features, estimator: BaseEstimator, grid: dict, cv: tuple[int, int],
                     union: Union | None) -> tuple[dict, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The head's cross-validation over the training and validation parts (a model chosen by it keeps an untouched
    test part), and its out-of-fold scores of the validation posters."""
    start = time.perf_counter()
    figures, out_of_fold = cross_validate(estimator, grid, features.X, features.Y, *cv,
                                          added=union.added if union else None,
                                          rows=np.flatnonzero(features.parts != "test"), groups=features.groups)
    val = features.parts == "val"
    figures["seconds"] = round(time.perf_counter() - start, 1)
    figures["val_mAP_macro"] = macro_map(features.Y[val], out_of_fold[val])
    return figures, (features.ids[val], features.Y[val], out_of_fold[val])
