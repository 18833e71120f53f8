"""How far a model's probabilities are from how often they come true: the expected calibration error (ECE)
and the reliability diagram, over every (poster, genre) probability of a part.

A probability of 0.25 should come true for a quarter of the (poster, genre) pairs that get it. The
probabilities go into BINS bins of equal width; ECE is the mean over bins, weighted by each bin's share of
the pairs, of |mean probability - share that came true|. 0 is perfectly calibrated.

A final head may also carry per-genre calibration (GenreCalibration), fitted on its out-of-fold probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

BINS = 10
EDGE = 1e-7  # probabilities are clipped this far from 0 and 1 before a logarithm


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


@dataclass(frozen=True)
class GenreCalibration:
    """Per-genre Platt scaling of the logit, p -> sigmoid(slope * logit(p) + intercept), fitted on out-of-fold
    probabilities and kept for a genre (else slope 1, intercept 0) only where it lowered that genre's
    cross-validated log-loss. The slope is positive, so no genre's ranking, and so no AP or mAP, changes."""
    slope: np.ndarray
    intercept: np.ndarray
    log_loss_before: np.ndarray  # per genre, over the held-out folds
    log_loss_after: np.ndarray  # the same posters, each calibrated by a fit on the other folds
    ece_before: float
    ece_after: float  # of the held-out calibrated probabilities, kept genres calibrated

    @property
    def kept(self) -> np.ndarray:
        return (self.slope != 1) | (self.intercept != 0)

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        return np.where(self.kept, expit(self.slope * _logit(probabilities) + self.intercept), probabilities)


def fit_genre_calibration(y: np.ndarray, probabilities: np.ndarray, folds: int = 5, seed: int = 0) -> GenreCalibration:
    """Fit each genre's Platt scaling on (posters, genres) out-of-fold probabilities, and keep it where `folds`-fold
    cross-validation over the posters says it lowers the log-loss."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold

    y, p = np.asarray(y).astype(int), np.asarray(probabilities, np.float64)
    z = _logit(p)
    held_out = p.copy()  # each poster calibrated by a fit on the other folds
    genres = y.shape[1]
    slope, intercept = np.ones(genres), np.zeros(genres)
    before, after = np.full(genres, np.nan), np.full(genres, np.nan)
    for g in range(genres):
        if y[:, g].min() == y[:, g].max():
            continue
        fits_everywhere = True
        for fit_rows, test_rows in KFold(folds, shuffle=True, random_state=seed).split(z):
            if y[fit_rows, g].min() == y[fit_rows, g].max():
                fits_everywhere = False
                break
            platt = LogisticRegression(C=1e4).fit(z[fit_rows, g:g + 1], y[fit_rows, g])
            held_out[test_rows, g] = platt.predict_proba(z[test_rows, g:g + 1])[:, 1]
        if not fits_everywhere:
            held_out[:, g] = p[:, g]
            continue
        before[g], after[g] = _log_loss(y[:, g], p[:, g]), _log_loss(y[:, g], held_out[:, g])
        platt = LogisticRegression(C=1e4).fit(z[:, g:g + 1], y[:, g])
        if after[g] < before[g] and platt.coef_[0, 0] > 0:
            slope[g], intercept[g] = platt.coef_[0, 0], platt.intercept_[0]
        else:
            held_out[:, g] = p[:, g]
    return GenreCalibration(slope, intercept, before, after, expected_calibration_error(y, p),
                            expected_calibration_error(y, held_out))


def _logit(p: np.ndarray) -> np.ndarray:
    return logit(np.clip(p, EDGE, 1 - EDGE))


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, EDGE, 1 - EDGE)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))
