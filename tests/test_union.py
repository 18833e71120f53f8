"""Two data sets trained together: genres mapped or left unknown, shared anime kept off both sides of the split."""
import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from postergenre.core.errors import DataError
from postergenre.evaluation.calibration import fit_genre_calibration
from postergenre.evaluation.metrics import choose_thresholds
from postergenre.evaluation.results import read_scores
from postergenre.extract.features import Features
from postergenre.heads.estimators import UNION_LOGISTIC, MaskedOneVsRest
from postergenre.heads.final import fit_final, out_of_fold_scores
from postergenre.heads.train import run_heads
from postergenre.heads.union import Union
from postergenre.modelfiles.heads import read_head
from postergenre.posters.franchises import normalise_title
from postergenre.posters.union import UNKNOWN

ATTRS = {"data": "d", "backbone": "efficientnet_lite0", "weights_sha256": "abc", "image_size": 224,
         "preprocessing": "squash", "tta": "none", "batch_size": 8, "split": "{}"}


def features(dataset: str, genres: list[str], Y: np.ndarray, parts: list[str], seed: int, **attrs) -> Features:
    rng = np.random.default_rng(seed)
    X = (rng.normal(0, 1, (len(Y), 6)) + Y @ rng.normal(0, 2, (Y.shape[1], 6))).astype(np.float32)
    return Features(np.array([f"{dataset[0]}{i}" for i in range(len(Y))]), np.array(parts), X, Y.astype(np.uint8),
                    genres, {**ATTRS, "dataset": dataset, **attrs})


def anime_and_anilist(n: int = 90):
    rng = np.random.default_rng(0)
    parts = ["train"] * (n - 30) + ["val"] * 15 + ["test"] * 15
    anime = features("anime", ["Action", "Gourmet", "Suspense"], (rng.random((n, 3)) < 0.4), parts, 1)
    anilist = features("anilist", ["Action", "Mecha", "Thriller"], (rng.random((n, 3)) < 0.4), ["train"] * n, 2)
    # anilist's a0 is anime's a0 (a training poster), a1 is anime's last (a test poster), spelled otherwise
    anime_titles = {"a0": ("Cowboy Bebop",), f"a{n - 1}": ("Re:Zero kara Hajimeru",)}
    anilist_titles = {"a0": ("cowboy bebop",), "a1": ("RE ZERO  Kara hajimeru",)}
    return anime, anilist, anime_titles, anilist_titles


def test_added_posters_have_mapped_genres_and_never_a_held_out_twin():
    anime, anilist, anime_titles, anilist_titles = anime_and_anilist()
    X, Y, report = Union(anime, anilist, anime_titles, anilist_titles).training_set()

    assert normalise_title("Re:Zero kara Hajimeru") == normalise_title("RE ZERO  Kara hajimeru")
    assert report["matched"] == 2 and report["left_out"] == 1 and report["added"] == 89  # a1 matches a test poster
    assert report["renamed"] == {"Thriller": "Suspense"} and report["masked"] == ["Gourmet"]
    assert report["unmapped"] == ["Mecha"]
    own_X, own_Y = anime.part("train")
    assert len(X) == len(Y) == len(own_X) + 89
    np.testing.assert_array_equal(X[:len(own_X)], own_X)
    np.testing.assert_array_equal(Y[:len(own_X)], own_Y)
    added = np.delete(np.arange(90), 1)  # every anilist poster but a1, in order
    np.testing.assert_array_equal(X[len(own_X):], anilist.X[added])
    np.testing.assert_array_equal(Y[len(own_X):, 0], anilist.Y[added, 0])  # Action is Action
    np.testing.assert_array_equal(Y[len(own_X):, 2], anilist.Y[added, 2])  # Thriller is Suspense
    assert (Y[len(own_X):, 1] == UNKNOWN).all()  # anilist does not label Gourmet: neither yes nor no
    # a cross-validation fold holds out other posters: anilist's a1 joins a fit that anime's last poster is in
    fold_held = np.zeros(90, dtype=bool)
    fold_held[:10] = True  # anime's a0 is scored: its twin a0 stays out
    X_fold, _, fold_report = Union(anime, anilist, anime_titles, anilist_titles).added(fold_held)
    assert fold_report["left_out"] == 1 and len(X_fold) == 89
    np.testing.assert_array_equal(X_fold, anilist.X[1:])


def test_features_of_another_embedding_are_refused():
    anime, anilist, anime_titles, anilist_titles = anime_and_anilist()
    anilist.attrs["backbone"] = "resnet50"
    with pytest.raises(DataError, match="different embeddings.*same BACKBONE"):
        Union(anime, anilist, anime_titles, anilist_titles)


def test_unknown_labels_are_left_out_of_their_genre_only():
    rng = np.random.default_rng(3)
    X = rng.normal(0, 1, (120, 5))
    Y = (X[:, :3] + rng.normal(0, 0.5, (120, 3)) > 0).astype(np.int8)
    masked = Y.copy()
    masked[80:, 1] = UNKNOWN
    model = MaskedOneVsRest(LogisticRegression()).fit(X, masked)
    alone = LogisticRegression().fit(X[:80], Y[:80, 1])
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], alone.predict_proba(X)[:, 1])
    everyone = LogisticRegression().fit(X, Y[:, 0])
    np.testing.assert_allclose(model.predict_proba(X)[:, 0], everyone.predict_proba(X)[:, 1])
    # with every label known it is plain one-vs-rest
    np.testing.assert_allclose(MaskedOneVsRest(LogisticRegression()).fit(X, Y).predict_proba(X),
                               OneVsRestClassifier(LogisticRegression()).fit(X, Y).predict_proba(X))
    # a genre whose known labels are all positive (or unknown everywhere) is a constant, as one-vs-rest makes it
    constant = masked.copy()
    constant[:80, 2], constant[80:, 2] = 1, UNKNOWN
    constant[:, 0] = UNKNOWN
    probabilities = MaskedOneVsRest(LogisticRegression()).fit(X, constant).predict_proba(X)
    assert (probabilities[:, 2] == 1).all() and (probabilities[:, 0] == 0).all()


def test_union_logistic_head_is_scored_on_the_targets_own_parts(tmp_path):
    anime, anilist, anime_titles, anilist_titles = anime_and_anilist()
    union = Union(anime, anilist, anime_titles, anilist_titles)
    with pytest.raises(DataError, match="logistic head only"):
        run_heads(anime, ["logistic", "mlp"], tmp_path / "models", tmp_path / "results", union=union)
    run_heads(anime, ["logistic"], tmp_path / "models", tmp_path / "results", cv=(3, 1), union=union)

    result = json.loads((tmp_path / "results" / "anime" / "efficientnet_lite0-logistic-union-anilist.json").read_text())
    assert result["union"]["added"] == 89 and result["test"]["overall"]["posters"] == 15
    run_heads(anime, ["logistic"], tmp_path / "models", tmp_path / "results", cv=(3, 1))
    alone = json.loads((tmp_path / "results" / "anime" / "efficientnet_lite0-logistic.json").read_text())
    # cross-validated with the posters added to each fit: the same folds, other figures
    assert len(result["cv"]["mAP_macro"]["values"]) == len(alone["cv"]["mAP_macro"]["values"]) == 3
    assert result["cv"]["mAP_macro"]["values"] != alone["cv"]["mAP_macro"]["values"]
    # the margins are measured against the target's own prior (-1s from the added posters would skew it)
    prior = read_scores(tmp_path / "results" / "anime" / "baseline-prior.scores.npz")["test"][2]
    np.testing.assert_allclose(prior[0], anime.part("train")[1].mean(axis=0), rtol=1e-6)
    model, settings = read_head(tmp_path / "models" / "anime-efficientnet_lite0-logistic-union-anilist.skops")
    assert model.predict_proba(anime.X).shape == (90, 3) and settings["genres"] == anime.genres


def test_the_final_union_head_learns_from_every_poster_of_both(tmp_path):
    anime, anilist, anime_titles, anilist_titles = anime_and_anilist()
    union = Union(anime, anilist, anime_titles, anilist_titles)
    run_heads(anime, ["logistic"], tmp_path / "models", tmp_path / "results", union=union)
    with pytest.raises(DataError, match="no head results"):  # without the other set, its head is no candidate
        fit_final(anime, tmp_path / "results", tmp_path / "models")

    path = fit_final(anime, tmp_path / "results", tmp_path / "models", folds=3, union=union)

    model, settings = read_head(path)
    # no poster is held out of a final model, so even the twin of a test poster is added
    assert settings["final"]["union"]["added"] == 90 and settings["final"]["posters"] == 180
    estimator = clone(UNION_LOGISTIC[0]).set_params(**settings["params"])
    refit = clone(estimator).fit(*union.everything()[:2])
    # calibration and thresholds from out-of-fold scores, each fold's fit with the posters that share no title with
    # the fold
    oof = out_of_fold_scores(estimator, anime.X, anime.Y, 3, 0, union.added)
    calibration = fit_genre_calibration(anime.Y, oof, 3, 0)
    np.testing.assert_allclose(model.predict_proba(anime.X), calibration.apply(refit.predict_proba(anime.X)), atol=1e-6)
    assert settings["thresholds"] == choose_thresholds(anime.Y, calibration.apply(oof)).tolist()
    assert not np.allclose(oof, out_of_fold_scores(estimator, anime.X, anime.Y, 3, 0))
    assert "and on all 90 posters of anilist (genres it does not label" in path.with_suffix(".md").read_text()
