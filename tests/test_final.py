"""make final: the chosen head refit on every labelled poster, its threshold from out-of-fold predictions."""
import csv
import dataclasses
import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file
from sklearn.base import clone

import postergenre.ensemble.combine
from postergenre.core.errors import DataError
from postergenre.core.workspace import arrays_path
from postergenre.evaluation.calibration import fit_genre_calibration
from postergenre.ensemble.combine import Combination
from postergenre.evaluation.metrics import choose_thresholds
from postergenre.evaluation.recall import recall_thresholds
from postergenre.extract.engines import Embedder
from postergenre.extract.features import Features, load_features
from postergenre.heads.estimators import HEADS
from postergenre.ensemble.final import fit_final_ensemble
from postergenre.heads.final import fit_final, out_of_fold_scores
from postergenre.heads.train import run_heads
from postergenre.modelfiles import ModelFileError, members_dir
from postergenre.modelfiles.heads import read_head
from postergenre.modelfiles.networks import read_network
from postergenre.predict.models import load_model, predict_files
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
    oof = out_of_fold_scores(clone(HEADS[chosen][0]).set_params(**params), features.X, features.Y, 5, 0)
    if chosen == "mlknn":  # no logit to calibrate
        calibrate = lambda p: p  # noqa: E731
        assert "calibration" not in settings["final"]
    else:
        calibrate = fit_genre_calibration(features.Y, oof, 5, 0).apply
        assert settings["final"]["calibration"]["ece_after"] < settings["final"]["calibration"]["ece_before"]
    np.testing.assert_allclose(final.predict_proba(features.X), calibrate(refit.predict_proba(features.X)), atol=1e-6)
    assert settings["thresholds"] == choose_thresholds(features.Y, calibrate(oof)).tolist()
    assert settings["recall_thresholds"] == recall_thresholds(features.Y, calibrate(oof))
    assert settings["final"]["source"] == f"efficientnet_lite0-{chosen}" and settings["final"]["posters"] == 300
    # not what the posters it was fitted on would give
    assert settings["thresholds"] != choose_thresholds(features.Y, final.predict_proba(features.X)).tolist()

    card = path.with_suffix(".md").read_text()
    assert f"the **{chosen}** head" in card and "refit on all 300 labelled posters" in card
    assert "5-fold out-of-fold predictions" in card and "Rare (" in card  # the rare genre is a stated limit


def test_a_final_logistic_head_carries_its_calibration_in_its_last_layer(tmp_path):
    """The strongly regularised logistic head is underconfident: Platt scaling, kept where cross-validation lowers
    the log-loss, lowers the out-of-fold calibration error, and is folded into the saved head's weights, so the
    head file and its arrays predict calibrated probabilities with no step of their own; the ranking is kept."""
    features = labelled_posters()
    run_heads(features, ["logistic"], tmp_path / "models", tmp_path / "results")
    path = fit_final(features, tmp_path / "results", tmp_path / "models", folds=5, seed=0)
    final, settings = read_head(path)
    calibration = settings["final"]["calibration"]
    assert calibration["ece_after"] < calibration["ece_before"] and max(calibration["slope"]) > 1
    raw = clone(HEADS["logistic"][0]).set_params(**settings["params"]).fit(features.X, features.Y)
    p_raw, p_final = raw.predict_proba(features.X), final.predict_proba(features.X)
    assert np.abs(p_final - p_raw).max() > 0.05
    assert all((np.argsort(p_final[:, g], kind="stable") == np.argsort(p_raw[:, g], kind="stable")).all()
               for g in range(p_raw.shape[1]) if calibration["slope"][g] != 1)
    tensors = load_file(str(arrays_path(path)))
    logits = ((features.X - tensors["mean"]) / tensors["scale"]) @ tensors["weights0"] + tensors["bias0"]
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), p_final, atol=1e-6)
    card = path.with_suffix(".md").read_text()
    ece = f"{calibration['ece_before']:.4f} before, {calibration['ece_after']:.4f} after"
    assert "## Calibration" in card and ece in card


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
    assert f"model: {path} ({dataset}'s final model" in result.stderr


@pytest.mark.slow
def test_the_final_ensemble_refits_its_members_and_predicts_their_average(trained, sample_dir, sample_split,
                                                                          sample_features, tmp_path, monkeypatch):
    root = tmp_path / "run"
    shutil.copytree(trained, root)
    dataset = next((root / "results").iterdir()).name
    features = root / "features" / f"{dataset}-efficientnet_lite0.h5"
    dirs = ["--results-dir", str(root / "results"), "--models-dir", str(root / "models")]
    features.parent.mkdir()
    shutil.copy(sample_features, features)
    run_heads(load_features(features), ["logistic", "mlknn"], root / "models", root / "results")
    network = next((root / "results" / dataset).glob("cnn-*.json")).stem
    weights = {"efficientnet_lite0-logistic": 2, "efficientnet_lite0-mlknn": 1, network: 1}
    # both, whatever validation says
    monkeypatch.setattr(postergenre.ensemble.combine, "select", lambda y_val, scores: weights)
    postergenre.ensemble.combine.ensemble(root / "results", dataset)

    with pytest.raises(DataError, match=f"networks {network} are not refit yet"):
        fit_final_ensemble(features, root / "results", root / "models")
    run_module("cnn", "--data", str(sample_dir), "--split", str(sample_split), "--widths", "4,8,8,8", "--batch-size",
               "16", "--workers", "0", "--epochs", "2", "--final", "--runs-dir", str(root / "runs"), *dirs)
    path = fit_final_ensemble(features, root / "results", root / "models")

    assert path == root / "models" / f"{dataset}-final.json"
    head, head_settings = read_head(members_dir(path) / "efficientnet_lite0-logistic.skops")
    assert head_settings["final"]["posters"] == 64  # every labelled poster of the sample
    assert "| efficientnet_lite0-logistic | 2 | refit here on 64 posters |" in path.with_suffix(".md").read_text()
    predicted = run_module("predict", "--dataset", dataset, *dirs, "--images", str(sample_dir / "images"),
                           "--out", str(tmp_path / "p.csv"))
    assert f"model: {path} ({dataset}'s final model" in predicted.stderr
    images = sorted((sample_dir / "images").iterdir())
    members = {name: predict_files(load_model(members_dir(path) / f"{name}{suffix}"), images)[0]
               for name, suffix in (("efficientnet_lite0-logistic", ".skops"), ("efficientnet_lite0-mlknn", ".skops"),
                                    (network, ".safetensors"))}
    combination = Combination.from_dict(json.loads(path.read_text())["combination"])
    with open(tmp_path / "p.csv") as f:
        written = np.array([[float(p) for p in row[2:]] for row in list(csv.reader(f))[1:]])
    np.testing.assert_allclose(written, combination(members), rtol=1e-5, atol=1e-7)

    # the two heads share the backbone's Embedder, which runs once a batch
    calls, embed = [], Embedder.__call__
    monkeypatch.setattr(Embedder, "__call__", lambda self, pixels: calls.append(len(pixels)) or embed(self, pixels))
    ensemble = load_model(path)
    assert len({id(member.embedder) for member in ensemble.members.values() if member.head is not None}) == 1
    # 12 posters are batched otherwise than 64, and a batch of other posters may run another convolution
    # algorithm: fp32 sums then differ in the fifth digit
    np.testing.assert_allclose(predict_files(ensemble, images[:12])[0], written[:12], rtol=1e-4, atol=1e-6)
    assert sum(calls) == 12 and len(calls) == -(-12 // ensemble.batch_size)  # each poster embedded once

    hostile = root / "models" / "hostile.json"
    manifest = json.loads(path.read_text())
    manifest["members"][network]["file"] = f"../{dataset}-final.safetensors"  # a file outside the members folder
    hostile.write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="each a model file named in hostile-members/"):
        load_model(hostile)
    linked = root / "models" / "linked.json"  # a plainly named member that is a symlink out of its folder
    members_dir(linked).mkdir()
    manifest["members"][network]["file"] = "escape.safetensors"
    (members_dir(linked) / "escape.safetensors").symlink_to(root / "models" / f"{dataset}-final.safetensors")
    linked.write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=f"member '{network}' links out of linked-members/"):
        load_model(linked)


RESULT = r"result toy/efficientnet_lite0-logistic: "


@pytest.mark.parametrize("planted, message", [
    ({"params": {"memory": "CACHE"}}, RESULT + r"'memory' is not a parameter the logistic head searches"),
    ({"head": "mlp", "params": {"mlpclassifier__alpha": 10.0, "mlpclassifier__max_iter": 100000}},
     RESULT + r"'mlpclassifier__max_iter' is not a parameter the mlp head searches"),
    ({"head": "mlp", "params": {"mlpclassifier__hidden_layer_sizes": [60000, 60000]}},
     r".*/results/toy: no head results on efficientnet_lite0 features"),  # the file is listed and skipped
    ({"params": {"onevsrestclassifier__estimator__C": 1e9}},
     RESULT + r"onevsrestclassifier__estimator__C=1000000000\.0 is outside what the logistic head searches "
              r"\(a float from 3e-05 to 0\.003\)"),
    ({"params": {"onevsrestclassifier__estimator__C": "0.001"}},
     RESULT + r"onevsrestclassifier__estimator__C='0\.001'"),
    ({"head": "os.system"}, RESULT + r"head 'os\.system' is not one of logistic, mlknn, mlp"),
    ({"head": ["logistic"]}, r".*/results/toy: no head results on efficientnet_lite0 features"),  # the schema
])
def test_a_planted_result_cannot_choose_code_paths_or_sizes(tmp_path, planted, message):
    """make final and make audit build the head a result names with the parameters it chose: a planted result
    that names a cache folder (joblib would unpickle what it finds there), layer sizes, values outside the grid
    or another estimator is refused in one line before anything is built or written."""
    from postergenre.audit.__main__ import audit_dataset

    features = labelled_posters()
    run_heads(features, ["logistic"], tmp_path / "models", tmp_path / "results")
    path = tmp_path / "results" / "toy" / "efficientnet_lite0-logistic.json"
    planted = json.loads(json.dumps(planted).replace("CACHE", str(tmp_path / "cache")))
    path.write_text(json.dumps({**json.loads(path.read_text()), **planted}))
    for run in (lambda: fit_final(features, tmp_path / "results", tmp_path / "models"),
                lambda: audit_dataset(features, tmp_path / "results", tmp_path / "audit")):
        with pytest.raises(DataError, match=f"^{message}"):
            run()
    assert not (tmp_path / "cache").exists() and not (tmp_path / "models" / "toy-final.skops").exists()
    assert not (tmp_path / "audit").exists()


def test_a_model_no_better_than_the_prior_is_called_one(tmp_path):
    """Posters whose features carry nothing of their genres: the picked head's sets are no better than a constant
    answer at 95%, and the card, the report's headline and the audit page say so in one sentence; the card shows
    the baselines beside the model and the validation part's size, and the audit its rank correlation with the
    number of genres."""
    from postergenre.audit.__main__ import audit_dataset
    from postergenre.evaluation.report import write_report

    features = labelled_posters()
    noise = dataclasses.replace(features, X=np.random.default_rng(0).normal(size=features.X.shape).astype(np.float32))
    run_heads(noise, ["logistic"], tmp_path / "models", tmp_path / "results")
    card = fit_final(noise, tmp_path / "results", tmp_path / "models").with_suffix(".md").read_text()
    assert "**Near the prior.** At 95%, this model's micro-F1 cannot be told apart from" in card
    assert "## Against trivial baselines" in card and "Chosen on 45 validation posters (under 100" in card
    assert "| baseline-prior |" in card and "-frequent |" in card
    report = write_report(tmp_path / "results", tmp_path / "features", tmp_path / "reports",
                          models_dir=tmp_path / "models").read_text()
    assert "**Near the prior.**" in report
    page = audit_dataset(noise, tmp_path / "results", tmp_path / "audit").with_suffix(".md").read_text()
    assert "the ranking model's" in page and "Rank correlation (Spearman) between a poster's label quality" in page

    run_heads(features, ["logistic"], tmp_path / "models", tmp_path / "results")  # learnable: no such sentence
    assert "Near the prior" not in fit_final(features, tmp_path / "results", tmp_path / "models").with_suffix(
        ".md").read_text()
