"""Every model's results as one JSON file, results/<dataset>/<model>.json, and its scores beside it.

The scores file (<model>.scores.npz) keeps each validation and test poster's id, true genres and
scores, so that models can be combined later (evaluation.ensemble) without running them again. A
cross-validated head also keeps its out-of-fold scores of the validation posters (part OUT_OF_FOLD).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from postergenre.core.files import atomic_write, write_text_atomic
from postergenre.evaluation.metrics import macro_map


# the validation posters scored by the cross-validation folds that held them out
OUT_OF_FOLD = "val_out_of_fold"


def overall(result: dict, part: str, figure: str = "mAP_macro") -> float:
    """A result's overall figure on one part ("val" or "test"): its macro mAP unless another is named."""
    return result[part]["overall"][figure]


def result_path(results_dir: Path | str, dataset: str, model: str) -> Path:
    return Path(results_dir) / dataset / f"{model}.json"


def scores_path(results_dir: Path | str, dataset: str, model: str) -> Path:
    return Path(results_dir) / dataset / f"{model}.scores.npz"


def write_result(results_dir: Path | str, dataset: str, model: str, result: dict) -> Path:
    path = result_path(results_dir, dataset, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({"model": model, "dataset": dataset, **result}, indent=1))
    return path


def read_results(results_dir: Path | str) -> dict[str, list[dict]]:
    """dataset -> its results, sorted by model name. A cross-validated head written before its result held the
    mAP of its out-of-fold validation scores gets it from its scores file, where that file has them."""
    results: dict[str, list[dict]] = {}
    for path in sorted(Path(results_dir).glob("*/*.json")):
        result = json.loads(path.read_text())
        scores = scores_path(results_dir, result["dataset"], result["model"])
        if "cv" in result and "val_mAP_macro" not in result["cv"] and scores.exists():
            saved = read_scores(scores)
            if OUT_OF_FOLD in saved:
                result["cv"]["val_mAP_macro"] = macro_map(saved[OUT_OF_FOLD][1], saved[OUT_OF_FOLD][2])
        results.setdefault(result["dataset"], []).append(result)
    return results


def write_scores(results_dir: Path | str, dataset: str, model: str,
                 parts: dict[str, tuple[list[str], np.ndarray, np.ndarray]]) -> Path:
    """Save part -> (poster ids, 0/1 labels, scores) for the val and test parts (and OUT_OF_FOLD)."""
    path = scores_path(results_dir, dataset, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for part, (ids, labels, scores) in parts.items():
        arrays.update({f"{part}_ids": np.asarray(ids, dtype=str), f"{part}_labels": np.asarray(labels, np.uint8),
                       f"{part}_scores": np.asarray(scores, np.float32)})
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path


def read_scores(path: Path | str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """part -> (poster ids, labels, scores), as written by write_scores."""
    with np.load(path) as saved:
        parts = {key.rsplit("_", 1)[0] for key in saved.files}
        return {part: (saved[f"{part}_ids"], saved[f"{part}_labels"], saved[f"{part}_scores"]) for part in parts}


def align_scores(saved: dict[str, dict], part: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The posters every model scored (a model may have skipped unreadable ones), in one order:
    (ids, labels, {model: scores}), from {model: read_scores(...)}."""
    common = sorted(set.intersection(*(set(scores[part][0]) for scores in saved.values())))
    rows = {m: {poster: i for i, poster in enumerate(scores[part][0])} for m, scores in saved.items()}
    first = next(iter(saved))
    labels = saved[first][part][1][[rows[first][p] for p in common]]
    return (np.array(common), labels,
            {m: scores[part][2][[rows[m][p] for p in common]] for m, scores in saved.items()})
