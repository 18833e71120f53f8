"""95% intervals for test figures, and paired differences between models, by resampling posters.

The test posters are drawn with replacement, RESAMPLES times (seeded); each figure is recomputed on
every resample with the model's thresholds, and so its predicted sets, held fixed. A resample is
represented by how often it drew each poster, so figures are weighted sums and nothing is copied.

Why BCa rather than plain percentiles: a resample that draws a rare genre's only positive poster
twice ranks the two copies together, which raises that genre's AP. Resampled macro mAP therefore
sits above the estimate, and a percentile interval can miss the estimate altogether. The
bias-corrected and accelerated interval (Efron 1987, computed by scipy.stats.bootstrap) shifts the
interval by the bias it measures (the share of resamples below the estimate) and widens it on the
skewed side (acceleration, from the jackknife). The genre set is fixed: the genres with a positive
among the test posters; a resample holding no positive of one leaves it out of that resample's mean.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import bootstrap

RESAMPLES, CONFIDENCE, SEED = 2000, 0.95, 0
FIGURES = ("mAP_macro", "f1_micro", "top1_accuracy")  # the test figures that carry an interval


def _draw_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """(resamples, n) counts of each poster in each resample, from scipy's resampled index arrays."""
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


def _figures(y: np.ndarray, scores: np.ndarray, predicted: np.ndarray):
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


def _bca(statistic, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """BCa (low, high) arrays for `statistic(counts) -> (k, resamples)` over resamples of n posters."""
    def resampled(indices: np.ndarray, axis: int = -1) -> np.ndarray:  # (n,) -> (k,); (m, n) -> (k, m)
        figures = statistic(_draw_counts(indices, n))
        return figures if np.ndim(indices) > 1 else figures[:, 0]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on degenerate figures (every resample equal): handled below
        result = bootstrap((np.arange(n),), resampled,
                           n_resamples=RESAMPLES, confidence_level=CONFIDENCE, method="BCa", vectorized=True,
                           batch=250, random_state=np.random.default_rng(seed))
    return np.atleast_1d(result.confidence_interval.low), np.atleast_1d(result.confidence_interval.high)


def figure_intervals(y: np.ndarray, scores: np.ndarray, predicted: np.ndarray, seed: int = SEED) -> dict:
    """{figure: [low, high]} 95% BCa intervals of test mAP (macro), micro-F1 and top-1."""
    y, predicted = np.asarray(y, dtype=np.uint8), np.asarray(predicted, dtype=np.uint8)
    statistic = _figures(y, np.asarray(scores, dtype=np.float64), predicted)
    estimate = statistic(np.ones((1, len(y))))[:, 0]
    low, high = _bca(statistic, len(y), seed)
    low, high = np.where(np.isnan(low), estimate, low), np.where(np.isnan(high), estimate, high)
    return {name: [float(lo), float(hi)] for name, lo, hi in zip(FIGURES, low, high)}


def paired_difference(y: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, seed: int = SEED) -> dict:
    """Test mAP of model a minus model b on the same resampled posters: the difference, its interval, a verdict."""
    y = np.asarray(y, dtype=np.uint8)
    map_a, map_b = WeightedAP(y, np.asarray(scores_a, np.float64)), WeightedAP(y, np.asarray(scores_b, np.float64))
    statistic = lambda counts: (map_a(counts) - map_b(counts))[None]  # noqa: E731
    difference = float(statistic(np.ones((1, len(y))))[0, 0])
    low, high = (float(v[0]) for v in _bca(statistic, len(y), seed))
    if np.isnan(low) or np.isnan(high):  # identical rankings: every resample gives the same difference
        low = high = difference
    verdict = "better" if low > 0 else "worse" if high < 0 else "not distinguishable"
    return {"difference": difference, "interval": [low, high], "verdict": verdict}
