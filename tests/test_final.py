"""make final: the chosen head refit on every labelled poster, its threshold from out-of-fold predictions."""
import json

import numpy as np
from sklearn.base import clone

from evaluation.metrics import choose_thresholds
from extract.features import Features
from heads.estimators import HEADS
from heads.final import fit_final, out_of_fold_scores
from heads.train import run_heads
from modelfiles import read_head, read_network
from tests.conftest import run_module


def labelled_posters(n: int = 300, seed: int = 8) -> Features:
    """Four overlapping genres, one of them rare, in train/val/test parts of 70/15/15%."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, 4)) < [0.4, 0.3, 0.2, 0.04]).astype(np.uint8)
    X = (rng.normal(0, 1, (n, 24)) + Y @ rng.normal(0, 1.2, (4, 24))).astype(np.float32)
    parts = np.array(["train"] * int(0.7 * n) + ["val"] * int(0.15 * n) + ["test"] * (n - int(0.85 * n)))
    attrs = {"dataset": "toy", "data": "data/toy", "backbone": "efficientnet_lite0", "weights_sha256": "abc",
             "image_size": 224, "preprocessing": "squash", "tta": "none", "batch_size": 8, "split": "{}"}
    return Features(np.array([str(i) for i in range(n)]), parts, X, Y, ["Action", "Drama", "Comedy", "Rare"], attrs)


def test_the_chosen_head_is_refit_on_all_posters(tmp_path):
    features = labelled_posters()
    run_heads(features, ["logistic", "mlknn"], tmp_path / "models", tmp_path / "results")

    path = fit_final(features, tmp_path / "results", tmp_path / "models", folds=5, seed=0)

    assert path == tmp_path / "models" / "toy-final.skops"
    final, settings = read_head(path)
    chosen = max(("logistic", "mlknn"), key=lambda h: _val_map(tmp_path, h))
    params = settings["params"]
    refit = clone(HEADS[chosen][0]).set_params(**params).fit(features.X, features.Y)  # every poster, test part too
    np.testing.assert_allclose(final.predict_proba(features.X), refit.predict_proba(features.X))
    oof = out_of_fold_scores(clone(HEADS[chosen][0]).set_params(**params), features.X, features.Y, 5, 0)
    assert settings["thresholds"] == choose_thresholds(features.Y, oof).tolist()
    assert settings["final"]["source"] == f"efficientnet_lite0-{chosen}" and settings["final"]["posters"] == 300
    # not what the posters it was fitted on would give
    assert settings["thresholds"] != choose_thresholds(features.Y, final.predict_proba(features.X)).tolist()

    card = path.with_suffix(".md").read_text()
    assert f"the **{chosen}** head" in card and "refit on all 300 labelled posters" in card
    assert "5-fold out-of-fold predictions" in card and "Rare (" in card  # the rare genre is a stated limit


def _val_map(root, head: str) -> float:
    result = json.loads((root / "results" / "toy" / f"efficientnet_lite0-{head}.json").read_text())
    return result["val"]["overall"]["mAP_macro"]


def test_a_network_is_refit_on_every_poster_for_the_epochs_validation_chose(trained, sample_dir, sample_split,
                                                                             tmp_path):
    fixture_args = ["cnn", "--data", str(sample_dir), "--split", str(sample_split), "--results-dir",
                    str(trained / "results"), "--widths", "4,8,8,8", "--batch-size", "16", "--workers", "0",
                    "--epochs", "2"]
    refused = run_module(*fixture_args[:-2], "--epochs", "2", "--final", "--results-dir", str(tmp_path / "none"),
                         check=False)
    assert refused.returncode == 1 and "run the same command without --final first" in refused.stderr

    run_module(*fixture_args, "--final", "--runs-dir", str(tmp_path / "runs"), "--models-dir", str(tmp_path / "models"))
    dataset = next((trained / "results").iterdir()).name
    evaluated = json.loads(next((trained / "results" / dataset).glob("cnn-*.json")).read_text())
    path = tmp_path / "models" / f"{dataset}-final.safetensors"
    _, settings = read_network(path)
    assert settings["thresholds"] == evaluated["thresholds"]["values"]  # chosen on posters the run did not fit
    log = (next((tmp_path / "runs" / dataset).glob("*-final")) / "log.csv").read_text().splitlines()
    assert len(log) - 1 == evaluated["best_epoch"]  # one row per epoch, no early stopping
    posters = sum(len(ids) for ids in json.loads(sample_split.read_text())["parts"].values())
    assert f"trained again on all {posters} labelled posters" in path.with_suffix(".md").read_text()

    result = run_module("predict", "--dataset", dataset, "--models-dir", str(tmp_path / "models"), "--results-dir",
                        str(trained / "results"), "--images", str(sample_dir / "images"), "--out",
                        str(tmp_path / "p.csv"))
    assert result.stdout.startswith(f"model: {path} ({dataset}'s final model")
