"""Genre sets with a recall guarantee (evaluation/recall.py): the guarantee on a simulation where the true recall is
known, and `--recall` through make final, predict and the Python API."""
import json
import subprocess
import sys

import numpy as np
import pytest

import postergenre
from postergenre.core.errors import DataError
from postergenre.core.workspace import arrays_path
from postergenre.evaluation.recall import RECALL_LEVELS, chosen_sets, realised_recall, recall_sets, recall_thresholds
from postergenre.evaluation.sets import predict_sets
from postergenre.modelfiles.heads import read_head
from postergenre.predict.light import load_light

GENRES = 12
PREVALENCE = np.random.default_rng(1).uniform(0.02, 0.5, GENRES)  # one population for every draw


def posters(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from calibrated probabilities (each genre is true with the probability the model gives), so
    that a large sample's recall is the true one."""
    scores = np.clip(PREVALENCE * rng.lognormal(0, 0.8, (n, GENRES)), 0, 1)
    return (rng.random((n, GENRES)) < scores).astype(np.uint8), scores


def test_the_sets_hold_their_recall_on_average_over_calibration_draws():
    """Ten calibration parts of 200 posters, each judged on 5,000 new ones: the mean recall reaches each level,
    without sets so large that they hold nearly every genre; the F1-style thresholds do not give 0.9."""
    rng = np.random.default_rng(0)
    realised = {level: [] for level in RECALL_LEVELS}
    sizes = {level: [] for level in RECALL_LEVELS}
    for _ in range(10):
        thresholds = recall_thresholds(*posters(200, rng))
        y, scores = posters(5000, rng)
        for level, threshold in thresholds.items():
            figures = realised_recall(y, recall_sets(scores, threshold))
            realised[level].append(figures["recall"])
            sizes[level].append(figures["set_size"])
    for level in RECALL_LEVELS:
        assert float(level) - 0.01 <= np.mean(realised[level]) <= float(level) + 0.03, (level, realised[level])
    assert np.mean(sizes["0.8"]) < np.mean(sizes["0.9"]) < np.mean(sizes["0.95"]) < GENRES - 2
    y, scores = posters(5000, rng)
    assert realised_recall(y, predict_sets(scores, 0.5))["recall"] < 0.7  # a threshold for F1 says nothing of recall


def test_realised_recall_by_hand():
    y = np.array([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    sets = np.array([[1, 0, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1]])
    figures = realised_recall(y, sets)
    assert figures["recall"] == pytest.approx(0.75) and figures["posters"] == 2  # the poster with no genre says nothing
    assert figures["set_size"] == pytest.approx(2.5)
    half = 1.96 * np.std([0.5, 1.0], ddof=1) / np.sqrt(2)
    assert (figures["low"], figures["high"]) == pytest.approx((0.75 - half, 0.75 + half))


def test_a_model_without_recall_thresholds_says_so_in_one_line():
    scores = np.array([[0.9, 0.1], [0.2, 0.3]])
    assert (chosen_sets(scores, np.array([0.5, 0.5])) == [[1, 0], [0, 1]]).all()  # the F1 rule: the top genre too
    assert (chosen_sets(scores, np.array([0.5, 0.5]), "0.9", {"0.9": 0.15}) == [[1, 0], [1, 1]]).all()
    assert (chosen_sets(scores, np.array([0.5, 0.5]), 0.9, {"0.9": 0.15}) == [[1, 0], [1, 1]]).all()
    with pytest.raises(DataError, match=r"^net carries no recall thresholds: a final head has them \(make final\)"):
        chosen_sets(scores, np.array([0.5, 0.5]), "0.9", None, "net")
    with pytest.raises(DataError, match="^net has recall thresholds for 0.9, not 0.8$"):
        chosen_sets(scores, np.array([0.5, 0.5]), "0.8", {"0.9": 0.15}, "net")


def test_a_final_head_predicts_recall_sets_on_both_paths(sample_heads, sample_dir):
    """make final stores a threshold per level, from its out-of-fold predictions; the skops file and the arrays
    carry the same ones, the light path, the full path and the API give the same sets, and they grow with the level."""
    final = next((sample_heads / "models").glob("*-final.skops"))
    _, settings = read_head(final)
    thresholds = settings["recall_thresholds"]
    assert list(thresholds) == list(RECALL_LEVELS) and thresholds["0.95"] <= thresholds["0.9"] <= thresholds["0.8"]
    assert load_light(final).recall_thresholds == thresholds and arrays_path(final).is_file()
    assert "## Genre sets with a recall guarantee" in final.with_suffix(".md").read_text()
    posters = sorted((sample_dir / "images").iterdir())[:6]
    model = postergenre.load(final)
    probabilities = model.predict_proba(posters)
    for level in RECALL_LEVELS:
        expected = [[g for g, p in zip(model.genres, row) if p > thresholds[level]] for row in probabilities]
        assert [p.genres for p in model.predict(posters, recall=level)] == expected
        result = subprocess.run([sys.executable, "-m", "postergenre", "predict", "--model", str(final), "--json",
                                 "--recall", level, *map(str, posters)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["recall"] == {"level": level, "threshold": thresholds[level]}
        assert [row["predicted"] for row in report["predictions"]] == expected
    smallest = [set(p.genres) for p in model.predict(posters, recall="0.8")]
    assert all(s <= set(p.genres) for s, p in zip(smallest, model.predict(posters, recall="0.95")))
