import doctest
import signal
import time

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.utils.estimator_checks import check_estimator

from postergenre.core.errors import DataError
from postergenre.evaluation.metrics import macro_map
from postergenre.extract.features import Features
from postergenre.heads import estimators
from postergenre.heads.arrays import head_layers
from postergenre.heads.estimators import HEADS, UNION_LOGISTIC, MLkNNHead
from postergenre.heads.train import cross_validate, load_head, save_head, tune
from postergenre.modelfiles.arrays import ACTIVATIONS
from postergenre.modelfiles.heads import read_head, write_head
from postergenre.testing.reference_mlknn import reference_mlknn
from tests.commands import start_module


def clustered(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three genres, each adding its own direction to the embedding."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, 3)) < 0.4).astype(np.uint8)
    Y[Y.sum(axis=1) == 0, 0] = 1
    X = rng.normal(0, 1, (n, 16)) + Y @ (3 * np.eye(3, 16))
    return X, Y


@pytest.mark.parametrize("name", list(HEADS))
def test_heads_follow_the_estimator_api(name):
    estimator, grid = HEADS[name]
    X, Y = clustered(200, seed=0)
    model = clone(estimator)
    assert model.fit(X, Y) is model
    proba = model.predict_proba(X[:50])
    assert isinstance(proba, np.ndarray) and proba.shape == (50, 3)
    assert proba.min() >= 0 and proba.max() <= 1
    # well separated genres are ranked almost perfectly
    X_test, Y_test = clustered(100, seed=1)
    scores = model.predict_proba(X_test)
    for g in range(3):
        positives, negatives = scores[Y_test[:, g] == 1, g], scores[Y_test[:, g] == 0, g]
        assert (positives[:, None] > negatives[None, :]).mean() > 0.9
    assert set(estimator.get_params()) >= set(grid)


def test_mlknn_posterior_by_hand():
    # One genre: three points near 0 have it, three near 5 do not. With k=2 and s=1, leaving each
    # training point out of its own neighbours: P(genre) = 4/8; P(count | genre) = [1, 1, 4] / 6
    # and P(count | not genre) = [4, 1, 1] / 6.
    X = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
    Y = np.array([[1], [1], [1], [0], [0], [0]])
    head = MLkNNHead(k=2, s=1.0).fit(X, Y)
    proba = head.predict_proba(np.array([[0.05], [2.62], [5.05]]))  # 2.62: nearest are 5.0 and 0.2
    # two neighbours with the genre: 0.5*4/6 / (0.5*4/6 + 0.5*1/6) = 0.8; one: 0.5; none: 0.2
    np.testing.assert_allclose(proba[:, 0], [0.8, 0.5, 0.2])
    assert head.predict(np.array([[0.05]])).tolist() == [[1]]


@pytest.mark.parametrize("k", [1, 10, 40])
def test_mlknn_predicts_as_scikit_multilearn(k):
    rng = np.random.default_rng(k)
    Y = (rng.random((400, 8)) < [0.4, 0.3, 0.2, 0.1, 0.05, 0.05, 0.02, 0.5]).astype(np.uint8)
    X = rng.normal(0, 1, (400, 32)) + Y @ rng.normal(0, 0.8, (8, 32))  # overlapping genres
    head = MLkNNHead(k=k, leave_self_out=False).fit(X[:300], Y[:300])
    theirs = reference_mlknn(X[:300], Y[:300], X[300:], k)
    np.testing.assert_array_equal(head.predict(X[300:]), theirs)
    assert 0 < theirs.mean() < 1


def test_tune_picks_on_validation():
    X, Y = clustered(300, seed=2)
    estimator, grid = HEADS["mlknn"]
    model, params, trials = tune(estimator, grid, X[:200], Y[:200], X[200:], Y[200:])
    best = max(trials, key=lambda t: t["val_mAP_macro"])
    assert params == best["params"] and model.get_params()["mlknnhead__k"] == params["mlknnhead__k"]
    assert len(trials) == len(grid["mlknnhead__k"])


def features_like(backbone: str, genres: list[str]) -> Features:
    X, Y = clustered(30, seed=3)
    attrs = {"dataset": "toy", "backbone": backbone, "weights_sha256": "abc", "image_size": 224,
             "preprocessing": "squash", "tta": "none", "batch_size": 8}
    return Features(np.array([str(i) for i in range(30)]), np.array(["train"] * 30), X, Y, genres, attrs)


def test_saved_head_refuses_other_features(tmp_path):
    features = features_like("efficientnet_lite0", ["A", "B", "C"])
    model = clone(HEADS["logistic"][0]).fit(features.X, features.Y)
    save_head(tmp_path / "head.skops", model, features, {}, [0.5, 0.5, 0.5])
    loaded = load_head(tmp_path / "head.skops", features)
    np.testing.assert_array_equal(loaded.predict_proba(features.X), model.predict_proba(features.X))

    with pytest.raises(DataError, match="backbone: head has 'efficientnet_lite0', features have 'resnet50'"):
        load_head(tmp_path / "head.skops", features_like("resnet50", ["A", "B", "C"]))
    with pytest.raises(DataError, match="different genre vocabulary"):
        load_head(tmp_path / "head.skops", features_like("efficientnet_lite0", ["A", "B", "D"]))


def test_cross_validation_scores_every_fold_with_a_head_fitted_without_it():
    X, Y = clustered(240, seed=4)
    estimator, grid = HEADS["logistic"]
    cv, out_of_fold = cross_validate(estimator, grid, X, Y, folds=4, repeats=2)
    assert (cv["folds"], cv["repeats"]) == (4, 2) and len(cv["mAP_macro"]["values"]) == 8
    assert cv["mAP_macro"]["mean"] > 0.9 and cv["f1_micro"]["mean"] > 0.7
    assert cv["mAP_macro"]["std"] == pytest.approx(np.std(cv["mAP_macro"]["values"], ddof=1))
    assert out_of_fold.shape == Y.shape and macro_map(Y, out_of_fold) > 0.9
    # labels unrelated to the features: a fold scored by a head fitted on it would still look good, and so
    # would out-of-fold scores that were not
    shuffled = Y[np.random.default_rng(0).permutation(len(Y))]
    cv, out_of_fold = cross_validate(estimator, grid, X, shuffled, folds=4, repeats=1)
    assert cv["mAP_macro"]["mean"] < 0.6 and macro_map(shuffled, out_of_fold) < 0.6
    # over chosen rows only (make heads: the training and validation parts), the others never touched: here
    # they are NaN, which any fit or prediction on them would refuse
    hidden = X.copy()
    hidden[200:] = np.nan
    within, out_of_fold = cross_validate(estimator, grid, hidden, Y, folds=4, repeats=1, rows=np.arange(200))
    assert len(within["mAP_macro"]["values"]) == 4 and within["mAP_macro"]["mean"] > 0.9
    assert np.isnan(out_of_fold[200:]).all() and not np.isnan(out_of_fold[:200]).any()


def test_mlknn_passes_scikit_learns_estimator_checks():
    failed = [r["check_name"] for r in check_estimator(MLkNNHead(), on_fail=None) if r["status"] == "failed"]
    assert failed == []


@pytest.mark.parametrize("name", list(HEADS))
def test_heads_work_with_scikit_learns_model_selection(name):
    X, Y = clustered(150, seed=5)
    scores = cross_val_score(clone(HEADS[name][0]), X, Y, cv=3, scoring="average_precision")
    assert np.isfinite(scores).all() and scores.mean() > 0.8


def test_mlknn_neighbours_do_not_depend_on_the_block_size(monkeypatch):
    """Distances are computed a block of rows at a time; each training poster still leaves out only itself."""
    rng = np.random.default_rng(5)
    Y = (rng.random((60, 4)) < 0.3).astype(np.uint8)
    X = rng.normal(0, 1, (60, 8)).astype(np.float32) + Y @ rng.normal(0, 1, (4, 8)).astype(np.float32)
    X[1] = X[0]  # an exact duplicate: its twin, not itself, is its nearest neighbour
    whole = MLkNNHead(k=5).fit(X, Y)
    monkeypatch.setattr(estimators, "NEIGHBOUR_BLOCK", 7)
    blocked = MLkNNHead(k=5).fit(X, Y)
    np.testing.assert_array_equal(whole.cond_true_, blocked.cond_true_)
    np.testing.assert_array_equal(whole.predict_proba(X[:13]), blocked.predict_proba(X[:13]))
    neighbours = blocked._neighbours(X, of_training=True)
    assert not (neighbours == np.arange(60)[:, None]).any() and 1 in neighbours[0] and 0 in neighbours[1]


def test_approximate_neighbours_find_almost_all_exact_ones_and_are_never_saved(tmp_path):
    X, Y = clustered(3000, seed=6)
    X = X.astype(np.float32)
    exact = MLkNNHead(k=20).fit(X[:2500], Y[:2500])
    approximate = MLkNNHead(k=20, neighbours="hnsw").fit(X[:2500], Y[:2500])
    found, truth = approximate._neighbours(X[2500:]), exact._neighbours(X[2500:])
    recall = np.mean([len(set(a) & set(e)) / 20 for a, e in zip(found, truth)])
    assert recall > 0.95
    assert (approximate.predict(X[2500:]) == exact.predict(X[2500:])).mean() > 0.95
    leave_out = approximate._neighbours(X[:2500], of_training=True)
    assert leave_out.shape == (2500, 20) and not (leave_out == np.arange(2500)[:, None]).any()

    write_head(tmp_path / "hnsw.skops", approximate, {"genres": ["a", "b", "c"]})
    loaded, _ = read_head(tmp_path / "hnsw.skops")  # the faiss index is rebuilt, not read
    assert "_index" not in loaded.__dict__
    # the same graph up to faiss's threaded construction
    assert (loaded.predict(X[2500:]) == approximate.predict(X[2500:])).mean() > 0.99


@pytest.mark.parametrize("name", ["logistic", "mlp", "union", "mlknn"])
def test_a_heads_plain_arrays_give_its_probabilities(name):
    """The arrays heads/arrays.py saves for the light path (predict/light.py) compute what scikit-learn does, a
    genre with one class in training and the union head's unknown labels included; ML-kNN has none."""
    X, Y = clustered(200, seed=5)
    Y = np.column_stack([Y, np.ones(len(Y), dtype=Y.dtype)])  # a genre on every poster: a constant predictor
    estimator = UNION_LOGISTIC[0] if name == "union" else HEADS[name][0]
    if name == "union":  # a quarter of the labels unknown, as the other data set's unlabelled genres are
        Y = np.where(np.random.default_rng(0).random(Y.shape) < 0.25, -1, Y.astype(np.int8))
    fitted = clone(estimator).fit(X, Y)
    layers = head_layers(fitted)
    if name == "mlknn":
        assert layers is None
        return
    mean, scale, dense, activations = layers
    z = (X - mean) / scale
    for (weights, bias), activation in zip(dense, activations):
        z = ACTIVATIONS[activation](z @ weights + bias)
    np.testing.assert_allclose(z, fitted.predict_proba(X), atol=1e-9)


def _feature_file(path, n: int = 3000, dim: int = 256) -> None:
    """A feature file of `n` posters in 4 genres, large enough that the MLP's search takes seconds."""
    import h5py

    rng = np.random.default_rng(0)
    Y = (rng.random((n, 4)) < 0.3).astype(np.uint8)
    X = rng.normal(0, 1, (n, dim)) + Y @ rng.normal(0, 1, (4, dim))
    parts = np.array(["train"] * int(0.7 * n) + ["val"] * int(0.15 * n) + ["test"] * (n - int(0.85 * n)))
    with h5py.File(path, "w") as f:
        for name, values in (("ids", np.arange(n).astype(str)), ("parts", parts)):
            f.create_dataset(name, data=values.astype(object), dtype=h5py.string_dtype())
        f.create_dataset("embeddings", data=X.astype(np.float32))
        f.create_dataset("labels", data=Y)
        f.attrs.update({"dataset": "toy", "data": "data/toy", "backbone": "efficientnet_lite0", "weights_sha256": "a",
                        "image_size": 224, "preprocessing": "squash", "tta": "none", "batch_size": 8, "split": "{}",
                        "genres": '["A", "B", "C", "D"]'})


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_mlp_search_saves_nothing(tmp_path, sig):
    """scikit-learn's MLP catches KeyboardInterrupt and returns half-fitted: Ctrl-C (or SIGTERM) during its search
    must still stop make heads, with no head, arrays, result or scores of it written."""
    _feature_file(tmp_path / "toy.h5")
    started = start_module("heads", "--features", str(tmp_path / "toy.h5"), "--heads", "logistic", "mlp",
                           "--models-dir", str(tmp_path / "models"), "--results-dir", str(tmp_path / "results"))
    assert started.wait_for_line("toy efficientnet_lite0-logistic: best")  # the MLP's search is next
    time.sleep(0.5)
    started.send_signal(sig)
    result = started.wait()
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == "interrupted", result.stderr
    assert "toy efficientnet_lite0-mlp" not in result.stdout
    written = sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and "-mlp" in p.name)
    assert written == []
    assert (tmp_path / "models" / "toy-efficientnet_lite0-logistic.skops").is_file()  # the finished head stays


def test_the_estimators_examples_run_as_written():
    import postergenre.heads.estimators as estimators

    outcome = doctest.testmod(estimators)
    assert outcome.attempted > 0 and outcome.failed == 0
