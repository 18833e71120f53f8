"""Every model's results as one JSON file, results/<dataset>/<model>.json, and its scores beside it.

A result's schema is `Result` below: written and read through it, so a result that does not fit is refused in
one line, naming its file. The scores file (<model>.scores.npz) keeps each validation and test poster's id, true
genres and scores, so that models can be combined later (ensemble/) without running them again. A
cross-validated head also keeps its out-of-fold scores of the validation posters (part OUT_OF_FOLD).
"""
from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import NotRequired, TypedDict

from postergenre.core.errors import DataError, first_line
from postergenre.core.files import atomic_write, open_regular, write_text_atomic
from postergenre.evaluation.metrics import macro_map

# the validation posters scored by the cross-validation folds that held them out
OUT_OF_FOLD = "val_out_of_fold"
MAX_RESULT_BYTES, MAX_SCORES_BYTES = 2**26, 2**31  # a result is some 100 KB; 1M posters x 50 genres of scores

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


def _has_map(overall: dict[str, Figure]) -> dict[str, Figure]:
    if "mAP_macro" not in overall:
        raise ValueError("no mAP_macro")
    return overall


class PartFigures(TypedDict):
    """One part's figures (evaluation.metrics.score): overall (mAP_macro, f1_micro, ..., posters), per genre, and
    on the test part the 95% intervals of mAP, micro-F1 and top-1."""
    overall: Annotated[dict[str, Figure], AfterValidator(_has_map)]
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


class Thresholds(TypedDict):
    per_genre: bool
    values: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=1)] | None  # None: a top-k rule
    k: NotRequired[int]


class _Scored(TypedDict):
    """What every model's result has: its names, the data it was scored on, its thresholds and its figures."""
    model: str
    dataset: str
    data: str
    thresholds: Thresholds
    val: PartFigures
    test: PartFigures


@with_config(ConfigDict(extra="allow"))
class BaselineResult(_Scored):
    kind: Literal["baseline"]
    backbone: str  # of the feature file whose split it was scored on
    tta: str


@with_config(ConfigDict(extra="allow"))
class HeadResult(_Scored):
    kind: Literal["head"]
    backbone: str
    tta: str
    head: str  # one of heads.estimators.HEADS, checked with params by heads.estimators.head_estimator
    params: dict[str, bool | int | float | str]
    cv: NotRequired[CrossValidation]


@with_config(ConfigDict(extra="allow"))
class Epoch(TypedDict):
    epoch: int
    train_loss: float
    val_loss: float
    val_mAP: float


@with_config(ConfigDict(extra="allow"))
class TrainingRecord(TypedDict):
    """A network's training settings (training.config.TrainConfig, as written)."""
    epochs: int
    augment: str
    loss: str
    lr: float
    seed: int


@with_config(ConfigDict(extra="allow"))
class NetworkResult(_Scored):
    kind: Literal["finetune", "cnn"]
    config: TrainingRecord
    history: list[Epoch]
    best_epoch: int
    run_dir: str


@with_config(ConfigDict(extra="allow"))
class EnsembleResult(_Scored):
    kind: Literal["ensemble"]
    members: Annotated[dict[str, int], Field(min_length=1)]  # model -> weight
    selection: NotRequired[dict]  # its out-of-fold validation mAP and its members (ensemble/)


@with_config(ConfigDict(extra="allow"))
class TitlesResult(_Scored):
    """The title head (heads/titles.py), alone or fused with a poster model: read apart from the poster models."""
    kind: Literal["titles"]
    backbone: str
    params: dict[str, float]
    poster_model: str | None  # the poster-only model fused with, None for the title alone
    poster_weight: Annotated[float, Field(ge=0, le=1)]


# Every model's result, by its kind: what each kind's readers need is there, or the file is refused in one line.
Result = Annotated[Union[BaselineResult, HeadResult, NetworkResult, EnsembleResult, TitlesResult],
                   Field(discriminator="kind")]
POSTER_KINDS = ("baseline", "head", "finetune", "cnn", "ensemble")  # the poster-only comparison's


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
    """One result file, checked against Result: one line naming the file if it does not fit. Only a regular file
    of at most MAX_RESULT_BYTES is read, and its data set and model are those its path names, so that no field
    of it can place a figure elsewhere."""
    path = Path(path)
    try:
        with open_regular(path) as f:
            data = f.read(MAX_RESULT_BYTES + 1)
        if len(data) > MAX_RESULT_BYTES:
            raise DataError(f"{path}: over {MAX_RESULT_BYTES // 2**20} MiB, larger than any result")
        result = _RESULT.validate_json(data)
    except ValidationError as e:
        error = e.errors()[0]
        where = ".".join(map(str, error["loc"])) + ": " if error["loc"] else ""
        raise DataError(f"{path}: not a result of this version ({where}{error['msg']})") from None
    except OSError as e:
        raise DataError(f"{path}: {e.strerror}") from None
    if (result["dataset"], result["model"]) != (path.parent.name, path.stem):
        raise DataError(f"{path}: not a result of this version (its data set and model, {result['dataset']!r} and "
                        f"{result['model']!r}, are not those its path names)")
    return result


def read_results(results_dir: Path | str, kinds: tuple[str, ...] = POSTER_KINDS) -> dict[str, list[Result]]:
    """dataset -> its results of `kinds` (default: the poster-only comparison's, not the title head's), sorted by
    model name. A result file that cannot be read is listed on stderr and
    skipped, so one damaged file leaves the others' data sets whole. A cross-validated head written before its
    result held the mAP of its out-of-fold validation scores gets it from its scores file, where that file has
    them."""
    results: dict[str, list[Result]] = {}
    for path in sorted(Path(results_dir).glob("*/*.json")):
        try:
            result = read_result(path)
            scores = scores_path(results_dir, result["dataset"], result["model"])
            if "cv" in result and "val_mAP_macro" not in result["cv"] and scores.exists():
                saved = read_scores(scores)
                if OUT_OF_FOLD in saved:
                    result["cv"]["val_mAP_macro"] = macro_map(saved[OUT_OF_FOLD][1], saved[OUT_OF_FOLD][2])
        except DataError as e:
            print(f"skipped: {e}", file=sys.stderr)
            continue
        if result["kind"] in kinds:
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
    """part -> (poster ids, labels, scores), as written by write_scores; a file that is not one (cut, of objects,
    declaring more than it holds, of parts that do not fit together) is one line naming it."""
    try:
        with open_regular(Path(path)) as f, zipfile.ZipFile(f) as archive:
            if sum(info.file_size for info in archive.infolist()) > MAX_SCORES_BYTES:
                raise ValueError(f"unzips to over {MAX_SCORES_BYTES // 2**20} MiB")
            with np.load(f, allow_pickle=False) as saved:
                parts = {key.rsplit("_", 1)[0] for key in saved.files}
                loaded = {part: (saved[f"{part}_ids"], saved[f"{part}_labels"], saved[f"{part}_scores"])
                          for part in parts}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a scores file of this version ({first_line(e)})") from None
    for part, (ids, labels, scores) in loaded.items():
        if ids.dtype.kind != "U" or labels.ndim != 2 or labels.shape != scores.shape or len(ids) != len(labels) \
                or scores.dtype.kind != "f":
            raise DataError(f"{path}: not a scores file of this version (its {part} arrays do not fit together)")
    return loaded


def read_scores_of(results_dir: Path | str, dataset: str, models: list[str]) -> dict[str, dict]:
    """{model: read_scores(...)} for those of `models` that left a scores file; a damaged one is listed on stderr
    and left out, as read_results does with a result."""
    saved = {}
    for model in models:
        path = scores_path(results_dir, dataset, model)
        if path.exists():
            try:
                saved[model] = read_scores(path)
            except DataError as e:
                print(f"skipped: {e}", file=sys.stderr)
    return saved


def align_scores(saved: dict[str, dict], part: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The posters every model scored (a model may have skipped unreadable ones), in one order:
    (ids, labels, {model: scores}), from {model: read_scores(...)}."""
    common = sorted(set.intersection(*(set(scores[part][0]) for scores in saved.values())))
    rows = {m: {poster: i for i, poster in enumerate(scores[part][0])} for m, scores in saved.items()}
    first = next(iter(saved))
    labels = saved[first][part][1][[rows[first][p] for p in common]]
    return (np.array(common), labels,
            {m: scores[part][2][[rows[m][p] for p in common]] for m, scores in saved.items()})
