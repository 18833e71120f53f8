"""scikit-multilearn's own MLkNN, which the project's MLkNNHead is checked against (tests) and timed against (bench).

Only this module imports scikit-multilearn's MLkNN: the heads do not need it.
"""
from __future__ import annotations

from unittest import mock

import numpy as np
from sklearn.neighbors import NearestNeighbors
from skmultilearn.adapt import MLkNN, mlknn


def _nearest_neighbors(n_neighbors: int = 5, **kwargs) -> NearestNeighbors:
    return NearestNeighbors(n_neighbors=n_neighbors, **kwargs)


def reference_mlknn(X_train: np.ndarray, Y_train: np.ndarray, X_test: np.ndarray, k: int, s: float = 1.0) -> np.ndarray:
    """Fit scikit-multilearn's MLkNN with its defaults, then predict X_test (0/1).

    scikit-multilearn 0.2.0 builds NearestNeighbors(k) positionally, which scikit-learn no longer
    accepts; the call is fixed on the way in.
    """
    with mock.patch.object(mlknn, "NearestNeighbors", _nearest_neighbors):
        model = MLkNN(k=k, s=s).fit(np.asarray(X_train), np.asarray(Y_train))
    return model.predict(np.asarray(X_test)).toarray()
