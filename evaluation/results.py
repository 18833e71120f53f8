"""Every model's results as one JSON file, results/<dataset>/<model>.json, and its scores beside it.

A result's schema is `Result` below: written and read through it, so a result that does not fit is refused in
one line, naming its file. The scores file (<model>.scores.npz) keeps each validation and test poster's id, true
genres and scores, so that models can be combined later (ensemble/) without running them again. A
cross-validated head also keeps its out-of-fold scores of the validation posters (part OUT_OF_FOLD).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import NotRequired, TypedDict

from postergenre.core.errors import DataError
from postergenre.core.files import atomic_write, write_text_atomic
from postergenre.evaluation.metrics import macro_map

# the validation posters scored by the cross-validation folds that held them out
OUT_OF_FOLD = "val_out_of_fold"

Figure = int | float | None  # None where a figure is undefined (no positive poster of a genre)
Bounds = Annotated[list[float], Field(min_length=2, max_length=2)]


class GenreFigures(TypedDict):
    genre: str
    support: int
    precision: float | None
    recall: float | None
    f1: float | None
    ap: float | None
    ece: NotRequired[float | None]


class PartFigures(TypedDict):
    """One part's figures (evaluation.metrics.score): overall (mAP_macro, f1_micro, ..., posters), per genre, and
    on the test part the 95% intervals of mAP, micro-F1 and top-1."""
    overall: dict[str, Figure]
    per_genre: list[GenreFigures]
    intervals: NotRequired[dict[str, Bounds]]


class Spread(TypedDict):
    mean: float
    std: float
    values: list[float]


@with_config(ConfigDict(extra="allow"))
class CrossValidation(TypedDict):
    """A head's cross-validation over the training and validation parts (heads.train.cross_validate)."""
    folds: int
    repeats: int
    mAP_macro: Spread
    f1_micro: Spread
    top1_accuracy: Spread
    val_mAP_macro: NotRequired[float]  # of its out-of-fold scores of the validation posters: what it is chosen by


@with_config(ConfigDict(extra="allow"))
class Result(TypedDict):
    """What every model's result has; each kind adds its settings (a head's params, a network's spec and history,
    an ensemble's members), kept as written."""
    model: str
    dataset: str
    kind: Literal["baseline", "head", "finetune", "cnn", "ensemble"]
    thresholds: dict
    val: PartFigures
    test: PartFigures
    cv: NotRequired[CrossValidation]
    params: NotRequired[dict[str, bool | int | float | str]]  # a head's, checked by heads.estimators.head_estimator
    selection: NotRequired[dict]  # an ensemble's out-of-fold validation mAP and its members (ensemble/)


_RESULT = TypeAdapter(Result)


def overall(result: Result, part: str, figure: str = "mAP_macro") -> float:
    """A result's overall figure on one part ("val" or "test"): its macro mAP unless another is named."""
    return result[part]["overall"][figure]


def result_path(results_dir: Path | str, dataset: str, model: str) -> Path:
    return Path(results_dir) / dataset / f"{model}.json"


def scores_path(results_dir: Path | str, dataset: str, model: str) -> Path:
    return Path(results_dir) / dataset / f"{model}.scores.npz"


def write_result(results_dir: Path | str, dataset: str, model: str, result: dict) -> Path:
    """Write `result` (the model's and data set's names added), after checking that it fits Result."""
    result = _RESULT.validate_python({"model": model, "dataset": dataset, **result})
    path = result_path(results_dir, dataset, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(result, indent=1))
    return path


def read_result(path: Path | str) -> Result:
    """One result file, checked against Result: one line naming the file if it does not fit."""
    try:
        return _RESULT.validate_json(Path(path).read_bytes())
    except ValidationError as e:
        error = e.errors()[0]
        where = ".".join(map(str, error["loc"])) + ": " if error["loc"] else ""
        raise DataError(f"{path}: not a result of this version ({where}{error['msg']})") from None
    except OSError as e:
        raise DataError(f"{path}: {e.strerror}") from None


def read_results(results_dir: Path | str) -> dict[str, list[Result]]:
    """dataset -> its results, sorted by model name. A cross-validated head written before its result held the
    mAP of its out-of-fold validation scores gets it from its scores file, where that file has them."""
    results: dict[str, list[Result]] = {}
    for path in sorted(Path(results_dir).glob("*/*.json")):
        result = read_result(path)
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
