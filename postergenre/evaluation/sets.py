"""The rule that turns probabilities into a genre set, for every model: each genre at or above its threshold,
and the top genre always. NumPy alone, so that predicting needs no scikit-learn."""
from __future__ import annotations

import numpy as np


def with_top_genre(scores: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """`predicted` plus each poster's top-scoring genre."""
    predicted = predicted.astype(np.uint8).copy()
    predicted[np.arange(len(scores)), scores.argmax(axis=1)] = 1
    return predicted


def predict_sets(scores: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    return with_top_genre(scores, scores >= thresholds)


def genre_names(sets: np.ndarray, genres: list[str]) -> list[list[str]]:
    """Each row of a (posters, genres) 0/1 matrix as the names of its genres."""
    return [[g for g, on in zip(genres, row) if on] for row in sets]
