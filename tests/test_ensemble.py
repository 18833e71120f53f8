"""Greedy ensemble selection: chosen on validation only, posters aligned by id."""
import json

import numpy as np
import pytest
from PIL import Image

from postergenre.core.errors import DataError
from postergenre.evaluation.compare import choosing_score
from postergenre.ensemble.combine import ensemble, groups_of, select
from postergenre.evaluation.metrics import evaluate, macro_map
from postergenre.evaluation.results import OUT_OF_FOLD, read_results, write_result, write_scores

GENRES = ["Action", "Comedy", "Drama"]


def _labels(rng: np.random.Generator, n: int) -> np.ndarray:
    y = (rng.random((n, len(GENRES))) < 0.4).astype(np.uint8)
    y[y.sum(axis=1) == 0, 0] = 1
    return y


def _noisy(rng: np.random.Generator, y: np.ndarray, noise: float) -> np.ndarray:
    """Scores that rank the true genres first, blurred by `noise`."""
    return np.clip(0.3 + 0.4 * y + rng.normal(0, noise, y.shape), 0, 1)


def _save(results_dir, model: str, parts: dict) -> None:
    """A model's result and scores file, as heads and training leave them."""
    result = evaluate(parts["val"][1], parts["val"][2], parts["test"][1], parts["test"][2], GENRES)
    write_result(results_dir, "toy", model, {"kind": "head", "data": "data/toy", "backbone": "efficientnet_lite0",
                                             "tta": "none", "head": "logistic", "params": {}, **result})
    write_scores(results_dir, "toy", model, parts)


def test_two_independent_models_beat_each_alone_and_selection_ignores_test(tmp_path):
    rng = np.random.default_rng(0)
    ids = {part: [f"{part}{i}" for i in range(300)] for part in ("val", "test")}
    y = {part: _labels(rng, 300) for part in ("val", "test")}
    good_a = {p: (ids[p], y[p], _noisy(rng, y[p], 0.5)) for p in ids}
    good_b = {p: (ids[p], y[p], _noisy(rng, y[p], 0.5)) for p in ids}
    # useless on validation, perfect on test: choosing it would mean looking at the test part
    cheat = {"val": (ids["val"], y["val"], rng.random((300, 3))), "test": (ids["test"], y["test"], y["test"] * 1.0)}
    for name, parts in (("a", good_a), ("b", good_b), ("cheat", cheat)):
        _save(tmp_path, name, parts)

    result = ensemble(tmp_path, "toy")

    assert "cheat" not in result["members"]
    assert set(result["members"]) == {"a", "b"}
    singles = [json.loads((tmp_path / "toy" / f"{m}.json").read_text()) for m in ("a", "b")]
    assert result["val"]["overall"]["mAP_macro"] > max(s["val"]["overall"]["mAP_macro"] for s in singles)
    assert result["test"]["overall"]["mAP_macro"] > max(s["test"]["overall"]["mAP_macro"] for s in singles)
    assert (tmp_path / "toy" / "ensemble.scores.npz").exists()


def test_a_cross_validated_head_is_chosen_on_its_out_of_fold_scores(tmp_path):
    """A head whose validation scores look perfect (its parameters were tuned on them) but whose out-of-fold
    scores of the same posters are noise is not taken; without those scores it would be taken first."""
    rng = np.random.default_rng(1)
    ids = {part: [f"{part}{i}" for i in range(300)] for part in ("val", "test")}
    y = {part: _labels(rng, 300) for part in ("val", "test")}
    for name in ("a", "b"):
        _save(tmp_path, name, {p: (ids[p], y[p], _noisy(rng, y[p], 0.5)) for p in ids})
    flattered = {p: (ids[p], y[p], _noisy(rng, y[p], 0.1)) for p in ids}
    _save(tmp_path, "flattered", flattered)
    assert "flattered" in ensemble(tmp_path, "toy")["members"]

    _save(tmp_path, "flattered", {**flattered, OUT_OF_FOLD: (ids["val"][::-1], y["val"][::-1], rng.random((300, 3)))})
    result = ensemble(tmp_path, "toy")
    assert set(result["members"]) == {"a", "b"}
    assert result["selection"]["out_of_fold_members"] == ["flattered"]


def test_selection_stops_when_nothing_helps():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 1]], dtype=np.uint8)
    perfect = y * 0.8 + 0.1
    assert select(y, {"perfect": perfect, "reversed": 1 - perfect}) == {"perfect": 1}


def test_posters_a_model_skipped_are_left_out_and_the_rest_aligned(tmp_path):
    rng = np.random.default_rng(1)
    ids = [f"p{i}" for i in range(50)]
    y = _labels(rng, 50)
    scores = _noisy(rng, y, 0.3)
    _save(tmp_path, "a", {p: (ids, y, scores) for p in ("val", "test")})
    # model b skipped poster p0 and lists the rest in reverse order
    order = list(range(49, 0, -1))
    _save(tmp_path, "b", {p: ([ids[i] for i in order], y[order], scores[order]) for p in ("val", "test")})

    result = ensemble(tmp_path, "toy")

    assert result["val"]["overall"]["posters"] == 49
    # a and b agree on every poster left, so the average is either of them on those 49
    alone = evaluate(y[1:], scores[1:], y[1:], scores[1:], GENRES)
    assert result["test"]["overall"]["mAP_macro"] == pytest.approx(alone["test"]["overall"]["mAP_macro"])


def test_one_model_is_not_an_ensemble(tmp_path):
    rng = np.random.default_rng(2)
    y = _labels(rng, 20)
    _save(tmp_path, "a", {p: ([f"p{i}" for i in range(20)], y, _noisy(rng, y, 0.3)) for p in ("val", "test")})
    with pytest.raises(DataError, match="two models or more, found 1"):
        ensemble(tmp_path, "toy")


def test_the_ensemble_is_chosen_by_selections_made_without_the_posters_they_score(tmp_path):
    """With many useless models and a small validation part, greedy selection adds noise models that happen to
    fit those posters: its validation mAP flatters it. The out-of-fold figure (each fold scored by a selection
    made on the others) does not, and it is what competes with single models."""
    rng = np.random.default_rng(5)
    ids = {part: [f"{part}{i}" for i in range(60)] for part in ("val", "test")}
    y = {part: _labels(rng, 60) for part in ("val", "test")}
    _save(tmp_path, "decent", {p: (ids[p], y[p], _noisy(rng, y[p], 0.6)) for p in ids})
    for i in range(10):
        _save(tmp_path, f"noise{i}", {p: (ids[p], y[p], rng.random((60, 3))) for p in ids})

    result = ensemble(tmp_path, "toy")

    assert len(result["members"]) > 1  # noise was added on validation
    out_of_fold = result["selection"]["mAP_macro"]
    assert out_of_fold < result["val"]["overall"]["mAP_macro"] - 0.02
    assert choosing_score(result) == (out_of_fold, "out-of-fold validation mAP")


def test_heads_compete_on_the_validation_posters_like_every_other_model(tmp_path):
    """A cross-validated head is chosen by the mAP of its out-of-fold scores of the validation posters, the
    posters every model is compared on, not by its mean over folds of other posters; results written before
    they held it get it from their scores file."""
    rng = np.random.default_rng(2)
    ids = {part: [f"{part}{i}" for i in range(200)] for part in ("val", "test")}
    y = {part: _labels(rng, 200) for part in ("val", "test")}
    parts = {p: (ids[p], y[p], _noisy(rng, y[p], 0.3)) for p in ids}
    out_of_fold = _noisy(rng, y["val"], 0.8)
    _save(tmp_path, "head", {**parts, OUT_OF_FOLD: (ids["val"], y["val"], out_of_fold)})
    path = tmp_path / "toy" / "head.json"
    written = json.loads(path.read_text())
    flattering = {"mean": 0.99, "std": 0.0, "values": [0.99]}  # a cross-validation written before val_mAP_macro
    path.write_text(json.dumps({**written, "cv": {"folds": 5, "repeats": 1, "mAP_macro": flattering,
                                                  "f1_micro": flattering, "top1_accuracy": flattering}}))
    (head,) = read_results(tmp_path)["toy"]
    expected = macro_map(y["val"], out_of_fold.astype(np.float32))
    assert choosing_score(head) == (pytest.approx(expected), "out-of-fold validation mAP")
    assert expected < head["val"]["overall"]["mAP_macro"] - 0.1  # the flattered validation scores are not used


def test_the_selection_folds_keep_a_franchise_together(tmp_path):
    """The ensemble's out-of-fold selection groups the validation posters by franchise, as the heads' folds do."""
    folder = tmp_path / "titled"
    (folder / "images").mkdir(parents=True)
    rows = ["id,title,genres", "a,Cowboy Bebop,Action", "b,Cowboy Bebop: Tengoku no Tobira,Action",
            "c,Monster,Drama"]
    (folder / "covers.csv").write_text("\n".join(rows) + "\n")
    for pid in "abc":
        Image.new("RGB", (8, 12)).save(folder / "images" / f"{pid}.jpg")
    groups = groups_of({"data": str(folder)}, np.array(["a", "b", "c"]))
    assert groups[0] == groups[1] != groups[2]
    assert groups_of({"data": str(tmp_path / "gone")}, np.array(["a"])) is None
