"""Multi-label heads on frozen embeddings, as scikit-learn estimators.

Each takes X (posters, dim) and a 0/1 matrix Y (posters, genres); `predict_proba` returns a dense
(posters, genres) array of probabilities. `HEADS` pairs each head with its validation grid.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier, _ConstantPredictor  # one-vs-rest's own stand-in for a constant
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import LabelBinarizer, Normalizer, StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from postergenre.core.errors import DataError

# HNSW graph links per node and search breadth: recall about 0.99 of exact neighbours on the bench's features.
HNSW_LINKS, HNSW_EF = 32, 128
NEIGHBOUR_BLOCK = 2048  # rows of distances at a time: 2,048 x 25,000 training posters is 200 MB in float32


class MLkNNHead(ClassifierMixin, BaseEstimator):
    """ML-kNN (Zhang & Zhou 2007), vectorised, with real posterior probabilities.

    It computes what scikit-multilearn's MLkNN computes (same smoothing `s`) with array operations
    instead of a Python loop over posters and genres. As ML-kNN prescribes, each training poster is
    left out of its own neighbours; `leave_self_out=False` counts it, as scikit-multilearn does by
    default, and then scikit-multilearn's own (testing/reference_mlknn.py) predicts the same, which a test
    checks. predict_proba divides by the evidence, which scikit-multilearn's does not.

    Neighbours are found exactly, one float matrix product per block of rows plus a top-k: with
    embeddings of 1,000+ dimensions this is many times faster than NearestNeighbors, and memory stays
    at one block of distances. Exact search costs posters x posters distances, so beyond about 100,000
    posters `neighbours="hnsw"` uses an approximate HNSW index (faiss) instead; its recall against exact
    neighbours is measured by the bench. The index is rebuilt after loading, never saved.

    Y is a 0/1 matrix (posters, genres), and then `classes_` numbers the genres. A 1-D y of class
    labels also works, one column per class, so that scikit-learn's estimator checks pass: predict
    then returns labels and predict_proba one row per poster that sums to 1.

    Parameters
    ----------
    k : int, default=10
        Neighbours that vote; fewer posters than k + 1 in training make every other poster a neighbour.
    s : float, default=1.0
        Laplace smoothing of the prior and of the neighbour-count likelihoods, as in the paper and
        scikit-multilearn.
    leave_self_out : bool, default=True
        Leave each training poster out of its own neighbours when counting (ML-kNN's rule); False counts it,
        as scikit-multilearn does.
    neighbours : {"exact", "hnsw"}, default="exact"
        Exact neighbours by blocked matrix products, or faiss's approximate HNSW index.

    Attributes
    ----------
    classes_ : ndarray
        The genres' column indices (Y a 0/1 matrix), or the class labels (a 1-D y).
    k_ : int
        The neighbours actually used.
    prior_true_ : ndarray of shape (genres,)
        Each genre's smoothed prior.
    cond_true_, cond_false_ : ndarray of shape (genres, k_ + 1)
        The smoothed likelihood of seeing j neighbours with the genre, for posters with and without it.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
    >>> Y = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 1]])
    >>> head = MLkNNHead(k=2).fit(X, Y)
    >>> head.predict(np.array([[0.05], [5.05]]))
    array([[1, 0],
           [0, 1]])
    """

    def __init__(self, k: int = 10, s: float = 1.0, leave_self_out: bool = True, neighbours: str = "exact"):
        self.k = k
        self.s = s
        self.leave_self_out = leave_self_out
        self.neighbours = neighbours

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_index", None)  # a faiss object: rebuilt from train_T_ when needed, never written to a file
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "MLkNNHead":
        X, Y = validate_data(self, X, Y, multi_output=True)
        check_classification_targets(Y)
        self.label_dtype_ = Y.dtype.str  # a string, not a dtype object: skops files then need no extra type
        if Y.ndim == 2 and np.isin(Y, (0, 1)).all():  # a genre matrix
            self.binarizer_, self.classes_ = None, np.arange(Y.shape[1])
        elif Y.ndim == 1 or Y.shape[1] == 1:  # one column of class labels
            self.binarizer_ = LabelBinarizer().fit(Y.ravel())
            self.classes_ = self.binarizer_.classes_
            Y = self.binarizer_.transform(Y.ravel())
            Y = np.hstack([1 - Y, Y]) if len(self.classes_) == 2 else Y  # binary: a column per class
        else:
            raise ValueError("ML-kNN takes a 0/1 genre matrix or one column of class labels, not several of labels")
        Y = np.asarray(Y, dtype=np.int64)
        skip = int(self.leave_self_out)  # a training poster is its own nearest neighbour
        self.k_ = min(self.k, len(X) - skip)  # fewer posters than k: every other poster is a neighbour
        if self.k_ < 1:
            raise ValueError(f"ML-kNN needs at least {1 + skip} samples to find a neighbour; got {len(X)} sample")
        # Transposed and contiguous, the layout the matrix product reads fastest; float32 features stay float32.
        self.train_T_ = np.ascontiguousarray(X.T, dtype=np.result_type(X.dtype, np.float32))
        self.train_sq_norms_ = np.einsum("ij,ij->j", self.train_T_, self.train_T_)
        neighbours = self._neighbours(X, of_training=True)
        counts = Y[neighbours].sum(axis=1)  # (posters, genres): how many neighbours have the genre
        n, genres = Y.shape
        self.prior_true_ = (self.s + Y.sum(axis=0)) / (2 * self.s + n)
        # with[g, c]: training posters with genre g whose neighbours hold g c times; without[g, c]: the rest
        offsets = np.arange(genres) * (self.k_ + 1)
        with_genre = np.bincount((offsets + counts)[Y == 1], minlength=genres * (self.k_ + 1))
        without = np.bincount((offsets + counts)[Y == 0], minlength=genres * (self.k_ + 1))
        with_genre, without = with_genre.reshape(genres, -1), without.reshape(genres, -1)
        self.cond_true_ = (self.s + with_genre) / (self.s * (self.k_ + 1) + with_genre.sum(axis=1, keepdims=True))
        self.cond_false_ = (self.s + without) / (self.s * (self.k_ + 1) + without.sum(axis=1, keepdims=True))
        self.train_labels_ = Y
        return self

    def _neighbours(self, X: np.ndarray, of_training: bool = False) -> np.ndarray:
        """(posters, k_) indices of each row's nearest training posters by Euclidean distance, in no order.

        `of_training`: X is the training set, and with `leave_self_out` row i never counts poster i.
        """
        leave_self_out = of_training and self.leave_self_out
        if self.neighbours == "hnsw":
            found = self._approximate_neighbours(X, leave_self_out)
            if (found >= 0).all():  # faiss marks neighbours its graph did not reach with -1
                return found
        elif self.neighbours != "exact":
            raise ValueError(f"neighbours must be 'exact' or 'hnsw', not {self.neighbours!r}")
        return self._exact_neighbours(X, of_training, leave_self_out)

    def _exact_neighbours(self, X: np.ndarray, of_training: bool, leave_self_out: bool) -> np.ndarray:
        """Nearest training posters, NEIGHBOUR_BLOCK rows of distances at a time, each row keeping its best
        k_ so far. When X is the training set the distances are symmetric: a block of rows is multiplied
        only with itself and the posters after it, and serves those posters' rows too, which saves up to
        half the multiply-adds."""
        X = np.ascontiguousarray(X, dtype=self.train_T_.dtype)
        # |x - t|^2 = |x|^2 - 2 x.t + |t|^2, and |x|^2 is the same along a row: rank by x.t - |t|^2 / 2
        half_norms = self.train_sq_norms_ / 2
        nearest = _NearestSoFar(len(X), self.k_)
        for start in range(0, len(X), NEIGHBOUR_BLOCK):
            rows = slice(start, min(start + NEIGHBOUR_BLOCK, len(X)))
            first = start if of_training else 0  # the columns before `start` came with earlier blocks
            dots = X[rows] @ self.train_T_[:, first:]
            if leave_self_out:
                np.fill_diagonal(dots, -np.inf)  # column first + i is row start + i itself
            nearest.update(rows, dots - half_norms[first:], first)
            if of_training and rows.stop < len(X):  # the later posters' distances to this block
                nearest.update(slice(rows.stop, len(X)), dots[:, rows.stop - first:].T - half_norms[rows], start)
        return nearest.indices

    def _approximate_neighbours(self, X: np.ndarray, leave_self_out: bool) -> np.ndarray:
        """As _neighbours, from an HNSW graph over the training posters, built on first use."""
        index = self.__dict__.get("_index")
        if index is None:
            import faiss

            index = faiss.IndexHNSWFlat(self.train_T_.shape[0], HNSW_LINKS)
            index.hnsw.efConstruction = HNSW_EF
            index.add(np.ascontiguousarray(self.train_T_.T, dtype=np.float32))
            index.hnsw.efSearch = HNSW_EF
            self._index = index
        skip = int(leave_self_out)
        _, found = index.search(np.ascontiguousarray(X, dtype=np.float32), self.k_ + skip)
        if leave_self_out:  # drop each poster itself, else the farthest
            found = np.array([row[row != i][:self.k_] for i, row in enumerate(found)])
        return found

    def _joint(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P(genre, counts) and P(not genre, counts) for each poster and genre."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        neighbours = self._neighbours(X)
        counts = self.train_labels_[neighbours].sum(axis=1)
        genres = np.arange(counts.shape[1])
        return (self.prior_true_ * self.cond_true_[genres, counts],
                (1 - self.prior_true_) * self.cond_false_[genres, counts])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p_true, p_false = self._joint(X)
        posterior = p_true / (p_true + p_false)
        return posterior if self.binarizer_ is None else posterior / posterior.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        p_true, p_false = self._joint(X)
        if self.binarizer_ is not None:  # class labels: the likeliest class
            return self.classes_[np.argmax(p_true / (p_true + p_false), axis=1)]
        return (p_true >= p_false).astype(self.label_dtype_)  # as scikit-multilearn decides


class _NearestSoFar:
    """Each row's k best-scoring columns seen so far, as tiles of scores arrive."""

    def __init__(self, rows: int, k: int):
        self.k = k
        self.scores = torch.full((rows, k), -torch.inf)
        self.indices = np.zeros((rows, k), np.int64)

    def update(self, rows: slice, scores: np.ndarray, first_column: int) -> None:
        # torch's topk runs on every core, and several times faster than np.argpartition on one
        tile = torch.topk(torch.from_numpy(scores), min(self.k, scores.shape[1]), dim=1, sorted=False)
        candidates = torch.cat([self.scores[rows], tile.values], dim=1)
        columns = np.hstack([self.indices[rows], tile.indices.numpy() + first_column])
        best = torch.topk(candidates, self.k, dim=1, sorted=False)
        self.scores[rows] = best.values
        self.indices[rows] = np.take_along_axis(columns, best.indices.numpy(), axis=1)


class MaskedOneVsRest(ClassifierMixin, BaseEstimator):
    """One binary classifier per genre, each fitted only on the posters whose label for that genre is known:
    Y = -1 marks a genre that a poster's data set does not label (heads/union.py), neither yes nor no."""

    def __init__(self, estimator: BaseEstimator):
        self.estimator = estimator

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "MaskedOneVsRest":
        X, Y = validate_data(self, X, Y, multi_output=True, accept_sparse="csr")  # sparse: the title head's TF-IDF
        known = Y >= 0
        self.estimators_ = [self._fit_genre(X, Y[:, g], known[:, g]) for g in range(Y.shape[1])]
        self.classes_ = np.arange(Y.shape[1])
        return self

    def _fit_genre(self, X: np.ndarray, y: np.ndarray, known: np.ndarray) -> BaseEstimator:
        """The genre's classifier on the posters whose label is `known`; where those labels are all one class
        (or there are none), a constant, as scikit-learn's one-vs-rest makes it (a type saved heads trust)."""
        classes = np.unique(y[known])
        if len(classes) < 2:
            return _ConstantPredictor().fit(X, classes if len(classes) else np.zeros(1, dtype=y.dtype))
        return clone(self.estimator).fit(X[known], y[known])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, accept_sparse="csr")
        return np.column_stack([e.predict_proba(X)[:, 1] for e in self.estimators_])

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


def union_logistic_head(C: float = 1.0) -> Pipeline:
    """The logistic head for two data sets trained together, whose added posters leave some genres unknown."""
    return make_pipeline(StandardScaler(), MaskedOneVsRest(LogisticRegression(C=C, max_iter=2000)))


LOGISTIC_C = [0.00003, 0.0001, 0.0003, 0.001, 0.003]
# name -> (default estimator, grid searched on the validation part)
HEADS = {
    "logistic": (logistic_head(), {"onevsrestclassifier__estimator__C": LOGISTIC_C}),
    "mlknn": (mlknn_head(), {"mlknnhead__k": [10, 20, 40, 80, 160]}),
    "mlp": (mlp_head(), {"mlpclassifier__alpha": [10.0, 30.0]}),  # two values: docs/speed.md, "The MLP's grid"
}
UNION_LOGISTIC = (union_logistic_head(), {"maskedonevsrest__estimator__C": LOGISTIC_C})
# make heads NEIGHBOURS=hnsw adds ML-kNN's neighbour search to its grid (heads.train.run_heads)
NEIGHBOUR_SEARCH = {"mlknnhead__neighbours": ["exact", "hnsw"]}


def head_estimator(head: str, params: object, union: bool = False, source: str = "result") -> BaseEstimator:
    """The unfitted head `head` (the union logistic head with `union`) with `params` read from a file, `source`.

    A file chooses only within what the head declares it searches: each parameter one of its grid's (or ML-kNN's
    neighbour search), of the grid's type, its number within the grid's range and its text one of the grid's.
    Nothing else reaches set_params from a file: no cache folder (`memory`, which joblib fills with pickles and
    unpickles), no other layer sizes, no other estimator. Anything else is refused in one line naming `source`.
    """
    if not isinstance(head, str) or head not in HEADS:
        raise DataError(f"{source}: head {head!r} is not one of {', '.join(HEADS)}")
    estimator, grid = UNION_LOGISTIC if union else HEADS[head]
    space = {**grid, **(NEIGHBOUR_SEARCH if head == "mlknn" else {})}
    if not isinstance(params, dict):
        raise DataError(f"{source}: its params are not a table of the {head} head's parameters")
    for name, value in params.items():
        allowed = space.get(name)
        if allowed is None:
            raise DataError(f"{source}: {name!r} is not a parameter the {head} head searches ({', '.join(space)})")
        if not _within(value, allowed):
            span = (", ".join(allowed) if isinstance(allowed[0], str)
                    else f"a {type(allowed[0]).__name__} from {min(allowed):g} to {max(allowed):g}")
            raise DataError(f"{source}: {name}={value!r} is outside what the {head} head searches ({span})")
    return clone(estimator).set_params(**params)


def _within(value: object, allowed: list) -> bool:
    if type(value) is not type(allowed[0]):  # bool is not int, nor int float: a file's types are the grid's
        return False
    return value in allowed if isinstance(value, str) else min(allowed) <= value <= max(allowed)
