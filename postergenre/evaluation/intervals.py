"""95% intervals for test figures, and paired differences between models, by resampling posters.

The test posters are drawn with replacement, RESAMPLES times (seeded); each figure is recomputed on
every resample with the model's thresholds, and so its predicted sets, held fixed. A resample is
represented by how often it drew each poster, so figures are weighted sums and nothing is copied.

Why a normal interval (estimate ± 1.96 bootstrap SDs) rather than BCa or percentiles: a resample that
draws a positive poster twice ranks the two copies together, which raises that genre's AP, so
resampled macro mAP sits about one SD above the estimate. Percentile intervals then miss the estimate,
and BCa's bias correction turns extreme and asks for percentiles that 2,000 resamples cannot resolve:
measured by bench.intervals (docs/evaluation.md), BCa's 95% intervals held the expected mAP of a test
part in about two parts of three, the normal interval in 95% or more. The SD is barely touched by the
bias, and the interval is centred on the estimate by construction.

What an interval covers: the expected figure of a test part of this size drawn from the same posters.
Macro mAP depends on that size (low-AP genres gain on small parts, absent rare genres drop out), so
figures of test parts of different sizes are not comparable.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
from scipy.stats import bootstrap, norm

RESAMPLES, CONFIDENCE, SEED = 2000, 0.95, 0
BATCH = 250  # resamples whose poster counts are held at once
FIGURES = ("mAP_macro", "f1_micro", "top1_accuracy")  # the test figures that carry an interval
METHODS = ("normal", "bca")  # bench.intervals measures both; the figures use METHOD
METHOD = "normal"
DESCRIPTION = f"95% intervals: the estimate ± 1.96 SDs of its {RESAMPLES:,} resampled test parts"
MEANING = ("An interval holds the expected figure of a test part of this size drawn from the same posters (its "
           "coverage is measured in docs/evaluation.md). Macro mAP rises on smaller parts, so figures of test parts "
           "of different sizes are not comparable.")

Statistic = Callable[[np.ndarray], np.ndarray]  # (resamples, posters) counts -> (figures, resamples)


def _draw_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """(resamples, n) counts of each poster in each resample, from resampled index arrays."""
    indices = np.atleast_2d(indices)
    counts = np.zeros((len(indices), n))
    np.add.at(counts, (np.arange(len(indices))[:, None], indices), 1)
    return counts


class WeightedAP:
    """Macro AP of fixed scores under poster weights; with unit weights it equals sklearn's average_precision."""

    def __init__(self, y: np.ndarray, scores: np.ndarray):
        self.genres = np.flatnonzero(y.any(axis=0))  # the fixed genre set
        self.orders, self.positives, self.tie_ends = [], [], []
        for g in self.genres:
            order = np.argsort(-scores[:, g], kind="stable")
            ranked = scores[order, g]
            ends = np.append(np.flatnonzero(np.diff(ranked) != 0), len(ranked) - 1)
            # tied scores share one threshold: each poster's precision is read at the end of its tie group
            self.tie_ends.append(np.repeat(ends, np.diff(np.append(-1, ends))))
            self.orders.append(order)
            self.positives.append(y[order, g].astype(float))

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        aps = np.empty((len(counts), len(self.genres)))
        for i, (order, positive, ends) in enumerate(zip(self.orders, self.positives, self.tie_ends)):
            weight = counts[:, order]
            hits = weight * positive
            precision = np.cumsum(hits, axis=1)[:, ends] / np.maximum(np.cumsum(weight, axis=1)[:, ends], 1e-12)
            with np.errstate(invalid="ignore", divide="ignore"):
                aps[:, i] = (hits * precision).sum(axis=1) / hits.sum(axis=1)  # NaN: no positive drawn
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(aps, axis=1)


def figure_statistic(y: np.ndarray, scores: np.ndarray, predicted: np.ndarray) -> Statistic:
    """counts -> (3, resamples) array of FIGURES under those poster weights."""
    macro_ap = WeightedAP(y, scores)
    cells = np.stack([(predicted & y).sum(axis=1), (predicted & (1 - y)).sum(axis=1),
                      ((1 - predicted) & y).sum(axis=1)], axis=1).astype(float)  # tp, fp, fn per poster
    top1_right = y[np.arange(len(y)), scores.argmax(axis=1)].astype(float)

    def figures(counts: np.ndarray) -> np.ndarray:
        tp, fp, fn = (counts @ cells).T
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        return np.stack([macro_ap(counts), f1, counts @ top1_right / counts.sum(axis=1)])
    return figures


def _normal_half_width(statistic: Statistic, n: int, seed: int, resamples: int) -> np.ndarray:
    """z * SD of the resampled figures: the normal interval is the estimate ± this."""
    rng = np.random.default_rng(seed)
    drawn = np.concatenate([statistic(_draw_counts(rng.integers(0, n, (min(BATCH, resamples - start), n)), n))
                            for start in range(0, resamples, BATCH)], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a figure undefined on every resample: NaN, handled below
        return norm.ppf(0.5 + CONFIDENCE / 2) * np.nanstd(drawn, axis=1, ddof=1)


def _bca(statistic: Statistic, n: int, seed: int, resamples: int) -> tuple[np.ndarray, np.ndarray]:
    """scipy's BCa (low, high) arrays: the method the figures used before bench.intervals measured it."""
    def resampled(indices: np.ndarray, axis: int = -1) -> np.ndarray:  # (n,) -> (k,); (m, n) -> (k, m)
        figures = statistic(_draw_counts(indices, n))
        return figures if np.ndim(indices) > 1 else figures[:, 0]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on degenerate figures (every resample equal): handled below
        result = bootstrap((np.arange(n),), resampled,
                           n_resamples=resamples, confidence_level=CONFIDENCE, method="BCa", vectorized=True,
                           batch=BATCH, random_state=np.random.default_rng(seed))
    return np.atleast_1d(result.confidence_interval.low), np.atleast_1d(result.confidence_interval.high)


def _bounds(statistic: Statistic, n: int, seed: int, method: str, resamples: int) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of each figure; a degenerate figure (every resample equal) gets its estimate as both."""
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r}; one of {', '.join(METHODS)}")
    estimate = statistic(np.ones((1, n)))[:, 0]
    if method == "normal":
        half = _normal_half_width(statistic, n, seed, resamples)
        low, high = estimate - half, estimate + half
    else:
        low, high = _bca(statistic, n, seed, resamples)
    return np.where(np.isnan(low), estimate, low), np.where(np.isnan(high), estimate, high)


def figure_intervals(y: np.ndarray, scores: np.ndarray, predicted: np.ndarray, seed: int = SEED,
                     method: str = METHOD, resamples: int = RESAMPLES) -> dict[str, list[float]]:
    """{figure: [low, high]} 95% intervals of test mAP (macro), micro-F1 and top-1, within [0, 1]."""
    y, predicted = np.asarray(y, dtype=np.uint8), np.asarray(predicted, dtype=np.uint8)
    statistic = figure_statistic(y, np.asarray(scores, dtype=np.float64), predicted)
    low, high = _bounds(statistic, len(y), seed, method, resamples)
    return {name: [float(max(lo, 0.0)), float(min(hi, 1.0))] for name, lo, hi in zip(FIGURES, low, high)}


def paired_difference(y: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, seed: int = SEED,
                      method: str = METHOD, resamples: int = RESAMPLES) -> dict:
    """Test mAP of model a minus model b on the same resampled posters: the difference, its interval, a verdict."""
    y = np.asarray(y, dtype=np.uint8)
    map_a, map_b = WeightedAP(y, np.asarray(scores_a, np.float64)), WeightedAP(y, np.asarray(scores_b, np.float64))
    statistic = lambda counts: (map_a(counts) - map_b(counts))[None]  # noqa: E731
    difference = float(statistic(np.ones((1, len(y))))[0, 0])
    low, high = (float(v[0]) for v in _bounds(statistic, len(y), seed, method, resamples))
    return {"difference": difference, "interval": [low, high], "verdict": _verdict(low, high)}


def _verdict(low: float, high: float) -> str:
    """What a paired difference's 95% interval says of a minus b."""
    return "better" if low > 0 else "worse" if high < 0 else "not distinguishable"


def paired_set_differences(y: np.ndarray, predicted_a: np.ndarray, top_a: np.ndarray, predicted_b: np.ndarray,
                           top_b: np.ndarray, seed: int = SEED, method: str = METHOD,
                           resamples: int = RESAMPLES) -> dict[str, dict]:
    """Micro-F1 and top-1 accuracy of genre sets a minus sets b on the same resampled posters, each with its
    interval and verdict. `top_a`, `top_b`: each poster's top genre index."""
    y = np.asarray(y, dtype=bool)
    rows = np.arange(len(y))

    def errors(predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        predicted = np.asarray(predicted, dtype=bool)
        return (y & predicted).sum(axis=1), (y ^ predicted).sum(axis=1)  # true positives; false ones and misses

    (tp_a, wrong_a), (tp_b, wrong_b) = errors(predicted_a), errors(predicted_b)
    right = y[rows, top_a].astype(float) - y[rows, top_b]

    def statistic(counts: np.ndarray) -> np.ndarray:
        f1 = [2 * (counts @ tp) / np.maximum(2 * (counts @ tp) + counts @ wrong, 1e-12)
              for tp, wrong in ((tp_a, wrong_a), (tp_b, wrong_b))]
        return np.stack([f1[0] - f1[1], (counts @ right) / counts.sum(axis=1)])

    estimate = statistic(np.ones((1, len(y))))[:, 0]
    low, high = _bounds(statistic, len(y), seed, method, resamples)
    return {name: {"difference": float(d), "interval": [float(lo), float(hi)], "verdict": _verdict(lo, hi)}
            for name, d, lo, hi in zip(("f1_micro", "top1_accuracy"), estimate, low, high)}
