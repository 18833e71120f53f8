"""One way to score every model: scores in [0, 1] per poster and genre in, metrics out.

Predicted genre sets come from thresholds chosen on the validation part (never the test part),
and every poster gets at least its top-scoring genre.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, hamming_loss, precision_score, recall_score

from postergenre.evaluation.calibration import expected_calibration_error
from postergenre.evaluation.intervals import figure_intervals
from postergenre.evaluation.sets import predict_sets

THRESHOLD_GRID = np.round(np.arange(0.02, 0.96, 0.01), 2)


def choose_thresholds(y_val: np.ndarray, scores_val: np.ndarray, per_genre: bool = False) -> np.ndarray:
    """Thresholds that maximise validation F1: micro-F1 for one global threshold, each genre's F1 per genre."""
    if not per_genre:
        f1s = [f1_score(y_val, predict_sets(scores_val, t), average="micro", zero_division=0)
               for t in THRESHOLD_GRID]
        return np.full(y_val.shape[1], THRESHOLD_GRID[int(np.argmax(f1s))])
    thresholds = np.empty(y_val.shape[1])
    for g in range(y_val.shape[1]):
        f1s = [f1_score(y_val[:, g], scores_val[:, g] >= t, zero_division=0) for t in THRESHOLD_GRID]
        thresholds[g] = THRESHOLD_GRID[int(np.argmax(f1s))]
    return thresholds


def cross_validated_f1(y_val: np.ndarray, scores_val: np.ndarray, per_genre: bool, seed: int = 0) -> float:
    """Micro-F1 of thresholds fitted on one half of the validation part and applied to the other, both ways."""
    order = np.random.default_rng(seed).permutation(len(y_val))
    halves = (order[: len(order) // 2], order[len(order) // 2:])
    f1s = []
    for fit, held in (halves, halves[::-1]):
        thresholds = choose_thresholds(y_val[fit], scores_val[fit], per_genre)
        f1s.append(f1_score(y_val[held], predict_sets(scores_val[held], thresholds), average="micro", zero_division=0))
    return float(np.mean(f1s))


def average_precisions(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AP per genre; NaN for a genre with no positives, where AP is undefined."""
    return np.array([average_precision_score(y[:, g], scores[:, g]) if y[:, g].any() else np.nan
                     for g in range(y.shape[1])])


def macro_map(y: np.ndarray, scores: np.ndarray) -> float:
    """Mean AP over the genres that have positives: what every model is tuned and selected on."""
    return float(np.nanmean(average_precisions(y, scores)))


def top_k_accuracy(y: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Share of posters with a true genre among their k top-scoring genres."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.take_along_axis(y, top, axis=1).any(axis=1).mean())


def precision_at_k(y: np.ndarray, scores: np.ndarray, k: int) -> float:
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.take_along_axis(y, top, axis=1).sum(axis=1).mean() / k)


def score(y: np.ndarray, scores: np.ndarray, predicted: np.ndarray, genres: list[str]) -> dict:
    """All metrics for true labels `y`, scores and predicted genre sets, each (posters, genres)."""
    aps = average_precisions(y, scores)
    overall = {
        "mAP_macro": float(np.nanmean(aps)) if not np.isnan(aps).all() else float("nan"),
        "mAP_micro": float(average_precision_score(y.ravel(), scores.ravel())),
        "f1_micro": f1_score(y, predicted, average="micro", zero_division=0),
        "f1_macro": f1_score(y, predicted, average="macro", zero_division=0),
        "f1_samples": f1_score(y, predicted, average="samples", zero_division=0),
        "precision_micro": precision_score(y, predicted, average="micro", zero_division=0),
        "precision_macro": precision_score(y, predicted, average="macro", zero_division=0),
        "recall_micro": recall_score(y, predicted, average="micro", zero_division=0),
        "recall_macro": recall_score(y, predicted, average="macro", zero_division=0),
        "hamming_loss": hamming_loss(y, predicted),
        "subset_accuracy": float((y == predicted).all(axis=1).mean()),
        "at_least_one_right": float((y & predicted).any(axis=1).mean()),
        "top1_accuracy": top_k_accuracy(y, scores, 1),
        "top3_accuracy": top_k_accuracy(y, scores, 3),
        "precision_at_1": precision_at_k(y, scores, 1),
        "precision_at_3": precision_at_k(y, scores, 3),
        "ece": expected_calibration_error(y, scores),
        "posters": int(len(y)),
    }
    per_genre = []
    f1s = f1_score(y, predicted, average=None, zero_division=0)
    precisions = precision_score(y, predicted, average=None, zero_division=0)
    recalls = recall_score(y, predicted, average=None, zero_division=0)
    for g, name in enumerate(genres):
        per_genre.append({"genre": name, "support": int(y[:, g].sum()), "precision": float(precisions[g]),
                          "recall": float(recalls[g]), "f1": float(f1s[g]),
                          "ap": None if np.isnan(aps[g]) else float(aps[g]),
                          "ece": expected_calibration_error(y[:, g], scores[:, g])})
    return {"overall": {k: float(v) for k, v in overall.items()}, "per_genre": per_genre}


def evaluate(y_val: np.ndarray, scores_val: np.ndarray, y_test: np.ndarray, scores_test: np.ndarray,
             genres: list[str], per_genre_thresholds: bool = False) -> dict:
    """Choose thresholds on validation, then score validation and test with them; test figures get intervals."""
    thresholds = choose_thresholds(y_val, scores_val, per_genre_thresholds)
    return {
        "thresholds": {"per_genre": per_genre_thresholds, "values": thresholds.tolist()},
        "val": score(y_val, scores_val, predict_sets(scores_val, thresholds), genres),
        "test": score_with_intervals(y_test, scores_test, predict_sets(scores_test, thresholds), genres),
    }


def score_with_intervals(y: np.ndarray, scores: np.ndarray, predicted: np.ndarray, genres: list[str]) -> dict:
    """score(), plus 95% intervals of mAP, micro-F1 and top-1 from resampled posters (evaluation.intervals)."""
    return {**score(y, scores, predicted, genres), "intervals": figure_intervals(y, scores, predicted)}


def prior_scores(y_train: np.ndarray, n: int) -> np.ndarray:
    """The prior-frequency baseline: every poster scores each genre by its training frequency."""
    return np.tile(y_train.mean(axis=0), (n, 1))


def most_frequent_sets(y_train: np.ndarray, n: int, k: int) -> np.ndarray:
    """The top-k baseline: every poster gets the k most frequent training genres."""
    predicted = np.zeros((n, y_train.shape[1]), dtype=np.uint8)
    predicted[:, np.argsort(-y_train.sum(axis=0), kind="stable")[:k]] = 1
    return predicted


def evaluate_baselines(y_train: np.ndarray, y_val: np.ndarray, y_test: np.ndarray, genres: list[str]) -> dict:
    """Results of the two trivial baselines, keyed by model name."""
    results = {"prior": evaluate(y_val, prior_scores(y_train, len(y_val)), y_test,
                                 prior_scores(y_train, len(y_test)), genres)}
    # k = the typical number of genres per training poster.
    k = max(1, int(round(y_train.sum(axis=1).mean())))
    top_k = {"thresholds": {"per_genre": False, "values": None, "k": k}}
    for part, y in (("val", y_val), ("test", y_test)):
        scorer = score_with_intervals if part == "test" else score
        top_k[part] = scorer(y, prior_scores(y_train, len(y)), most_frequent_sets(y_train, len(y), k), genres)
    results[f"top{k}-frequent"] = top_k
    return results
