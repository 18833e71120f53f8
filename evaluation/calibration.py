"""How far a model's probabilities are from how often they come true: the expected calibration error (ECE)
and the reliability diagram, over every (poster, genre) probability of a part.

A probability of 0.25 should come true for a quarter of the (poster, genre) pairs that get it. The
probabilities go into BINS bins of equal width; ECE is the mean over bins, weighted by each bin's share of
the pairs, of |mean probability - share that came true|. 0 is perfectly calibrated.
"""
from __future__ import annotations

import numpy as np

BINS = 10


def reliability(y: np.ndarray, probabilities: np.ndarray, bins: int = BINS) -> tuple[np.ndarray, np.ndarray,
                                                                                       np.ndarray]:
    """Per non-empty bin: the mean probability, the share of its pairs that came true, and how many pairs."""
    p, truth = np.asarray(probabilities, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    which = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    kept = counts > 0
    mean_p = np.bincount(which, weights=p, minlength=bins)[kept] / counts[kept]
    frequency = np.bincount(which, weights=truth, minlength=bins)[kept] / counts[kept]
    return mean_p, frequency, counts[kept]


def expected_calibration_error(y: np.ndarray, probabilities: np.ndarray, bins: int = BINS) -> float:
    mean_p, frequency, counts = reliability(y, probabilities, bins)
    return float(np.sum(counts * np.abs(mean_p - frequency)) / counts.sum()) if counts.sum() else float("nan")
