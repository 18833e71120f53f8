"""Multi-label heads on frozen embeddings, as scikit-learn estimators.

Each takes X (posters, dim) and a 0/1 matrix Y (posters, genres); `predict_proba` returns a dense
(posters, genres) array of probabilities. `HEADS` pairs each head with its validation grid.
"""
from __future__ import annotations

from unittest import mock

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import NearestNeighbors
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import Normalizer, StandardScaler
from skmultilearn.adapt import MLkNN, mlknn


def _nearest_neighbors(n_neighbors: int = 5, **kwargs) -> NearestNeighbors:
    return NearestNeighbors(n_neighbors=n_neighbors, **kwargs)


class MLkNNHead(ClassifierMixin, BaseEstimator):
    """ML-kNN (Zhang & Zhou 2007) from scikit-multilearn, with real posterior probabilities.

    scikit-multilearn 0.2.0 builds NearestNeighbors(k) positionally, which scikit-learn no longer
    accepts, and its predict_proba returns P(genre) * P(counts | genre) without dividing by the
    evidence. Fitting goes through its code with the call fixed, and leaves each training poster
    out of its own neighbours (`ignore_first_neighbours=1`) as ML-kNN prescribes; predict_proba
    normalises.
    """

    def __init__(self, k: int = 10, s: float = 1.0):
        self.k = k
        self.s = s

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "MLkNNHead":
        with mock.patch.object(mlknn, "NearestNeighbors", _nearest_neighbors):
            model = MLkNN(k=self.k, s=self.s, ignore_first_neighbours=1).fit(np.asarray(X), np.asarray(Y))
        self.knn_ = model.knn_
        self.train_labels_ = np.asarray(Y, dtype=np.int64)
        self.prior_true_ = np.asarray(model._prior_prob_true, dtype=float)
        self.cond_true_ = model._cond_prob_true.toarray()  # (genres, k + 1): P(count | genre)
        self.cond_false_ = model._cond_prob_false.toarray()  # P(count | not genre)
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        neighbours = self.knn_.kneighbors(np.asarray(X), self.k, return_distance=False)
        counts = self.train_labels_[neighbours].sum(axis=1)  # (posters, genres): neighbours with the genre
        genres = np.arange(counts.shape[1])
        p_true = self.prior_true_ * self.cond_true_[genres, counts]
        p_false = (1 - self.prior_true_) * self.cond_false_[genres, counts]
        return p_true / (p_true + p_false)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X) >= 0.5).astype(np.uint8)


def logistic_head(C: float = 1.0) -> Pipeline:
    """One-vs-rest logistic regression on standardised features."""
    return make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=C, max_iter=2000)))


def mlknn_head(k: int = 10) -> Pipeline:
    """ML-kNN on L2-normalised features, so that distances rank neighbours by cosine similarity."""
    return make_pipeline(Normalizer(), MLkNNHead(k=k))


def mlp_head(hidden: int = 512, alpha: float = 1.0, seed: int = 0) -> Pipeline:
    """One hidden ReLU layer and a sigmoid output per genre; L2 strength `alpha` is tuned on validation.

    No early stopping: scikit-learn would stop on subset accuracy, a poor signal for multi-label.
    """
    return make_pipeline(StandardScaler(), MLPClassifier(
        hidden_layer_sizes=(hidden,), alpha=alpha, max_iter=100, random_state=seed))


# name -> (default estimator, grid searched on the validation part)
HEADS = {
    "logistic": (logistic_head(), {"onevsrestclassifier__estimator__C": [0.00003, 0.0001, 0.0003, 0.001, 0.003]}),
    "mlknn": (mlknn_head(), {"mlknnhead__k": [10, 20, 40, 80, 160]}),
    "mlp": (mlp_head(), {"mlpclassifier__alpha": [3.0, 10.0, 30.0, 100.0]}),
}
