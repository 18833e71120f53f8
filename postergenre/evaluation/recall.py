"""Genre sets with a recall guarantee: conformal risk control (Angelopoulos et al., "Conformal Risk Control",
2022), through MAPIE's multi-label controller.

For a level such as 0.9, one probability threshold is chosen on held-out posters so that, on a new poster drawn
like them, the set {genres whose probability is above it} holds on average at least 90% of the poster's true
genres. The guarantee is on the mean over posters, not on each poster, and only for posters like the held-out
ones. The sets are the probabilities above the threshold alone (no top genre added), as the guarantee assumes.
Choosing thresholds needs MAPIE; applying them (recall_sets) needs NumPy only, for the light predict path.
"""
from __future__ import annotations

import numpy as np

from postergenre.core.errors import DataError
from postergenre.core.runspec import RECALL_LEVELS
from postergenre.evaluation.sets import predict_sets

GRID = 200  # candidate thresholds: this many quantiles of the held-out probabilities


def recall_thresholds(y: np.ndarray, scores: np.ndarray, levels: tuple[str, ...] = RECALL_LEVELS) -> dict[str, float]:
    """{level: threshold} from held-out labels and probabilities. Posters with no true genre say nothing about
    recall and are left out."""
    from mapie.risk_control import MultiLabelClassificationController

    labelled = np.asarray(y).sum(axis=1) > 0
    y, scores = np.asarray(y)[labelled].astype(int), np.asarray(scores, np.float64)[labelled]
    if len(y) < 2:
        raise DataError("recall thresholds need held-out posters with at least one true genre")
    candidates = np.unique(np.quantile(scores, np.linspace(0, 1, GRID)))
    controller = MultiLabelClassificationController(
        predict_function=np.asarray, risk="recall", method="crc", target_level=[float(level) for level in levels],
        predict_params=np.concatenate([[0.0], candidates]))
    controller.calibrate(scores, y)
    return {level: float(threshold) for level, threshold in zip(levels, controller.best_predict_param)}


def recall_sets(scores: np.ndarray, threshold: float) -> np.ndarray:
    """The (posters, genres) 0/1 sets: every genre whose probability is above the level's threshold."""
    return (np.asarray(scores) > threshold).astype(np.uint8)


def chosen_sets(scores: np.ndarray, thresholds: np.ndarray, level: str | float | None = None,
                recall_thresholds: dict[str, float] | None = None, model: str = "the model") -> np.ndarray:
    """A model's genre sets: by its F1 thresholds (and the top genre always), or with `level` (0.9 or "0.9") the
    sets of that recall level, from the `recall_thresholds` that `model` carries; one line where it has none."""
    if level is None:
        return predict_sets(scores, thresholds)
    level = level if isinstance(level, str) else repr(float(level))  # exactly: 0.8999999 is not 0.9
    if not recall_thresholds:
        raise DataError(f"{model} carries no recall thresholds: a final head has them (make final), chosen on its "
                        f"out-of-fold predictions")
    if level not in recall_thresholds:
        raise DataError(f"{model} has recall thresholds for {', '.join(recall_thresholds)}, not {level[:20]}")
    return recall_sets(scores, recall_thresholds[level])


def realised_recall(y: np.ndarray, sets: np.ndarray) -> dict[str, float]:
    """On posters with at least one true genre: the mean share of each poster's true genres in its set, with a
    95% interval (the mean ± 1.96 standard errors), and the mean set size."""
    y, sets = np.asarray(y, bool), np.asarray(sets, bool)
    labelled = y.sum(axis=1) > 0
    recall = (y & sets)[labelled].sum(axis=1) / y[labelled].sum(axis=1)
    half = 1.96 * recall.std(ddof=1) / np.sqrt(len(recall)) if len(recall) > 1 else float("nan")
    return {"recall": float(recall.mean()), "low": float(recall.mean() - half), "high": float(recall.mean() + half),
            "set_size": float(sets[labelled].sum(axis=1).mean()), "posters": int(labelled.sum())}
