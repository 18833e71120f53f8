"""make predict with a network saved by the training loop (a tiny PosterNet on the synthetic sample), and with
heads on the light path (predict/light.py)."""
import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from postergenre.core.workspace import arrays_path
from postergenre.evaluation.sets import predict_sets
from postergenre.posters.split import Split
from postergenre.predict.light import LIGHT_TOLERANCE, load_light
from postergenre.predict.models import load_model, predict_files
from tests.conftest import run_module


def test_predictions_score_as_the_evaluation_did(trained, sample_dir, sample_split, tmp_path):
    model = next((trained / "models").glob("*.safetensors"))
    out = tmp_path / "predictions.csv"
    run_module("predict", "--model", str(model), "--data", str(sample_dir), "--split", str(sample_split),
               "--out", str(out))
    predicted = json.loads(out.with_suffix(".json").read_text())
    evaluated = json.loads(next((trained / "results").glob("*/cnn-posternet-4-8-8-8.json")).read_text())
    assert predicted["scores"] == evaluated["test"]
    assert predicted["thresholds"] == evaluated["thresholds"]["values"]

    split = Split.load(sample_split)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"].rsplit("/", 1)[1] for r in rows] == [f"{i}.jpg" for i in split.parts["test"]]
    assert list(rows[0]) == ["image", "predicted", *split.genres]
    for row, entry in zip(rows, predicted["predictions"]):
        assert row["predicted"] and row["predicted"].split("|") == entry["predicted"]  # never empty: top genre
        assert [float(row[g]) for g in split.genres] == pytest.approx(list(entry["probabilities"].values()),
                                                                      rel=1e-7)


def test_a_folder_with_bad_files_and_unknown_genres(trained, sample_dir, sample_split, tmp_path):
    model = str(next((trained / "models").glob("*.safetensors")))
    folder = tmp_path / "new-posters"
    folder.mkdir()
    good = sorted((sample_dir / "images").iterdir())[:2]
    for path in good:
        shutil.copy(path, folder)
    (folder / "broken.jpg").write_bytes(good[0].read_bytes()[:200])
    (folder / "notes.txt").write_text("not a poster")
    out = tmp_path / "out" / "new.csv"
    result = run_module("predict", "--model", model, "--images", str(folder), "--out", str(out))
    assert f"skipped: {folder / 'broken.jpg'}: cannot decode image" in result.stderr
    assert f"skipped: {folder / 'notes.txt'}: not an image of an allowed format" in result.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    assert [p["image"] for p in report["predictions"]] == [str(folder / p.name) for p in good]
    assert [s["image"] for s in report["skipped"]] == [str(folder / "broken.jpg"), str(folder / "notes.txt")]
    assert "scores" not in report

    # a labelled folder whose CSV uses a genre the model never saw
    relabelled = tmp_path / "relabelled"
    shutil.copytree(sample_dir, relabelled)
    csv_path = relabelled / "covers.csv"
    lines = csv_path.read_text().splitlines()
    test_id = Split.load(sample_split).parts["test"][0]
    lines = [line + "|Zombie" if line.startswith(f"{test_id},") else line for line in lines]
    csv_path.write_text("\n".join(lines) + "\n")
    split = Path(shutil.copy(sample_split, tmp_path / "split.json"))  # brought up to date: every part kept
    run_module("posters", "split", "--data", str(relabelled), "--out", str(split), "--min-count", "3")
    result = run_module("predict", "--model", model, "--data", str(relabelled), "--split", str(split),
                        "--out", str(tmp_path / "relabelled.csv"))
    assert "genres not in the model's vocabulary, left out of the scores: Zombie (1 posters)" in result.stderr
    assert json.loads((tmp_path / "relabelled.json").read_text())["unknown_genres"] == {"Zombie": 1}


def test_an_empty_folder_says_so(trained, tmp_path):
    model = str(next((trained / "models").glob("*.safetensors")))
    (tmp_path / "empty").mkdir()
    result = run_module("predict", "--model", model, "--images", str(tmp_path / "empty"), "--out",
                        str(tmp_path / "p.csv"), check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'empty'}: the folder holds no files to predict"


def test_without_a_model_the_best_saved_one_is_used(trained, sample_dir, tmp_path):
    dataset = next((trained / "results").iterdir()).name
    folders = ["--models-dir", str(trained / "models"), "--results-dir", str(trained / "results")]
    result = run_module("predict", "--dataset", dataset, *folders, "--images", str(sample_dir / "images"),
                        "--out", str(tmp_path / "p.csv"))
    assert (f"model: {trained / 'models' / dataset}-cnn-posternet-4-8-8-8.safetensors "
            f"({dataset}'s evaluated model picked by cross-validated or validation mAP)") in result.stderr
    assert (tmp_path / "p.csv").exists()

    # without --out the predictions are printed, a line per poster or as JSON, and nothing is written
    images = sorted((sample_dir / "images").iterdir())[:2]
    printed = run_module("predict", "--dataset", dataset, *folders, "--images", str(images[0])).stdout
    assert re.fullmatch(rf"{re.escape(str(images[0]))}: \w[^:]* \d\.\d\d(, \w[^:]* \d\.\d\d)*\n", printed), printed
    report = json.loads(run_module("predict", "--dataset", dataset, *folders, "--images", str(images[1]),
                                   "--json").stdout)
    assert [row["image"] for row in report["predictions"]] == [str(images[1])] and report["predictions"][0]["predicted"]
    result = run_module("predict", "--dataset", "elsewhere", *folders, "--images", str(sample_dir / "images"),
                        "--out", str(tmp_path / "q.csv"), check=False)
    assert result.returncode == 1 and result.stderr.strip() == (
        f"error: no saved model of elsewhere in {trained / 'models'}/ (make heads, finetune or cnn save them; "
        f"--models-dir names another folder); pass one of: {dataset}-cnn-posternet-4-8-8-8.safetensors")


def test_a_head_on_the_light_path_predicts_as_the_full_model_does(sample_heads, sample_dir):
    """The logistic head and the MLP predict from their arrays and the cached ONNX graph, within LIGHT_TOLERANCE
    of the full model and with the same genre sets; ML-kNN has no arrays, and loads in full."""
    models = sample_heads / "models"
    paths = sorted((sample_dir / "images").iterdir())[:24]
    assert not arrays_path(next(models.glob("*-mlknn.skops"))).exists()
    for head in ("logistic", "mlp"):
        path = next(models.glob(f"*-{head}.skops"))
        light, full = load_light(path), load_model(path)
        assert light is not None and arrays_path(path).is_file()
        (expected, _), (got, errors) = predict_files(full, paths), light.predict_files(paths)
        assert not errors and np.abs(got - expected).max() < LIGHT_TOLERANCE
        assert (predict_sets(got, light.thresholds) == predict_sets(expected, full.thresholds)).all()
        assert light.genres == full.genres and (light.thresholds == full.thresholds).all()


def test_the_light_path_steps_aside_when_it_cannot_answer_alike(sample_heads, tmp_path, monkeypatch):
    """Torch or bf16 asked for, arrays beside another head file, or no cached graph: the full model loads."""
    path = next((sample_heads / "models").glob("*-logistic.skops"))
    assert load_light(path, engine="torch") is None and load_light(path, precision="bf16") is None
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    shutil.copy(arrays_path(path), arrays_path(copy))
    assert load_light(copy) is not None
    arrays_path(copy).write_bytes(b"\x01\x02\x03")  # cut short
    assert load_light(copy) is None
    shutil.copy(arrays_path(path), arrays_path(copy))
    copy.write_bytes(next((sample_heads / "models").glob("*-mlp.skops")).read_bytes())  # another head, same name
    assert load_light(copy) is None
    monkeypatch.setenv("POSTERGENRE_CACHE", str(tmp_path / "empty-cache"))
    assert load_light(path) is None


def test_one_poster_from_the_command_line_imports_neither_torch_nor_scikit_learn(sample_heads, sample_dir):
    path = next((sample_heads / "models").glob("*-logistic.skops"))
    poster = sorted((sample_dir / "images").iterdir())[0]
    probe = ("import sys; from postergenre.cli import main; main(sys.argv[1:]); "
             "print(sorted(m for m in ('torch', 'sklearn', 'skops') if m in sys.modules), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", probe, "predict", "--model", str(path), str(poster)],
                            capture_output=True, text=True, cwd="/", timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "[]"
    line = result.stdout.strip()
    assert line.startswith(f"{poster}: ") and len(line.split(", ")) >= 1
    full = load_model(path)
    probabilities = predict_files(full, [poster])[0][0]
    top = full.genres[int(np.argmax(probabilities))]
    assert f"{top} {probabilities.max():.2f}" in line


def test_one_batch_is_decoded_without_a_worker_process(trained, sample_dir, monkeypatch):
    """A worker only pays where it overlaps decoding with the model: from the second batch on."""
    import torch

    loader, workers = torch.utils.data.DataLoader, []
    monkeypatch.setattr(torch.utils.data, "DataLoader", lambda *a, **k: workers.append(k["num_workers"]) or
                        loader(*a, **k))
    predictor = load_model(next((trained / "models").glob("*.safetensors")))
    images = sorted((sample_dir / "images").glob("*.jpg"))[:predictor.batch_size + 1]
    one, _ = predict_files(predictor, images[:predictor.batch_size], workers=1)
    two, _ = predict_files(predictor, images, workers=1)
    assert workers == [0, 1]
    np.testing.assert_allclose(two[:predictor.batch_size], one, rtol=1e-6)


def _head_with(source: Path, out: Path, change_settings=None, change_tensors=None) -> Path:
    """A copy of the head file `source` and its arrays, with its settings and arrays changed as an attacker could,
    the arrays' checksum written into the head's settings as a genuine head records it."""
    from postergenre.core.workspace import file_sha256
    from postergenre.modelfiles import SETTINGS_KEY
    from postergenre.modelfiles.heads import read_head, write_head
    from postergenre.modelfiles.settings import head_settings

    estimator, settings = read_head(source)
    tensors = load_file(str(arrays_path(source)))
    with safe_open(str(arrays_path(source)), "np") as f:
        metadata = f.metadata()
    save_file((change_tensors or (lambda t: t))(tensors), str(arrays_path(out)), metadata=metadata)
    settings = {**settings, "arrays_sha256": file_sha256(arrays_path(out))}
    write_head(out, estimator, (change_settings or (lambda s: s))(settings))
    assert SETTINGS_KEY in metadata and head_settings(source).arrays_sha256 == file_sha256(arrays_path(source))
    return out


def test_arrays_are_used_only_where_their_head_vouches_for_them(sample_heads, sample_dir, tmp_path):
    """The head records its arrays' checksum, not the arrays their head's: edited arrays are not used, whatever
    they declare, and the command answers as the full model does. A head whose own settings vouch for hostile
    arrays, or hold what the full path's schema refuses, is refused by that schema on both paths."""
    source = next((sample_heads / "models").glob("*-logistic.skops"))
    poster = sorted((sample_dir / "images").iterdir())[0]
    full = predict_files(load_model(source), [poster])[0][0]

    edited = tmp_path / "edited.skops"
    shutil.copy(source, edited)
    tensors = load_file(str(arrays_path(source)))
    save_file({**tensors, "bias0": np.full_like(tensors["bias0"], np.nan)}, str(arrays_path(edited)),
              metadata={"postergenre": json.dumps({"activations": ["logistic"]})})
    assert load_light(edited) is None
    result = run_module("predict", "--model", str(edited), "--json", str(poster))
    assert result.returncode == 0 and "NaN" not in result.stdout
    expected = dict(zip(load_model(source).genres, full))
    assert json.loads(result.stdout)["predictions"][0]["probabilities"] == pytest.approx(expected, abs=1e-6)

    hostile = {
        "NaN weights": (None, lambda t: {**t, "weights0": np.full_like(t["weights0"], np.nan)}),
        "a backbone that is a path": (lambda s: {**s, "fingerprint": {**s["fingerprint"], "backbone": "/tmp/x"}},
                                      None),
        "a threshold below 0": (lambda s: {**s, "thresholds": [-1.0] * len(s["thresholds"])}, None),
        "a threshold of 1e308": (lambda s: {**s, "thresholds": [1e308] * len(s["thresholds"])}, None),
        "batch_size 0": (lambda s: {**s, "batch_size": 0}, None),
        "genres the arrays do not have": (lambda s: {**s, "genres": s["genres"] + ["Extra"],
                                                     "thresholds": s["thresholds"] + [0.5]}, None),
    }
    for i, (case, (settings, arrays)) in enumerate(hostile.items()):
        path = _head_with(source, tmp_path / f"hostile{i}.skops", settings, arrays)
        assert load_light(path) is None, case
        result = run_module("predict", "--model", str(path), "--json", str(poster), check=False)
        if settings is not None:  # the full path's schema refuses the head itself, in one line
            assert result.returncode == 1 and result.stderr.startswith(f"error: {path}: not a model this version"), \
                (case, result.stderr)
        else:  # the head file is sound: the full model answers from it
            assert result.returncode == 0 and "NaN" not in result.stdout, case


def test_a_final_model_is_never_scored_on_posters_it_was_refit_on(sample_heads, sample_dir, sample_split, tmp_path):
    """make predict DATA=x without IMAGES scored the final model on x's test part, which it was refit on (mAP 0.879
    against an honest 0.418): --dataset now scores the evaluated model there, and a final model named with
    --data is refused with what to do instead."""
    models, results = sample_heads / "models", sample_heads / "results"
    final = next(models.glob("*-final.skops"))
    dataset = final.name.removesuffix("-final.skops")
    split = sample_split
    scored = run_module("predict", "--dataset", dataset, "--models-dir", str(models), "--results-dir", str(results),
                        "--data", str(sample_dir), "--split", str(split), "--out", str(tmp_path / "test.csv"))
    assert "evaluated model picked by" in scored.stderr and "its final model has seen these posters" in scored.stderr
    assert "-final" not in json.loads((tmp_path / "test.json").read_text())["model"]
    refused = run_module("predict", "--model", str(final), "--data", str(sample_dir), "--split", str(split),
                         check=False)
    assert refused.returncode == 1 and "is a final model, refit on every labelled poster" in refused.stderr
    assert "Predict new posters (IMAGES=" in refused.stderr and not (tmp_path / "p.csv").exists()


def test_every_way_in_takes_the_light_path_for_a_head_with_arrays(sample_heads, sample_dir):
    """postergenre.load(), --dataset (what make predict and make serve use) and the page's server imported PyTorch
    and scikit-learn to predict a head (20+ s cold); they now load it as the light path does, as --model did."""
    models = sample_heads / "models"
    final = next(models.glob("*-final.skops"))
    dataset = final.name.removesuffix("-final.skops")
    poster = sorted((sample_dir / "images").iterdir())[0]
    heavy = "print(sorted(m for m in ('torch', 'sklearn', 'skops') if m in sys.modules), file=sys.stderr)"
    probes = {
        "load()": f"import sys, postergenre; print(postergenre.load({str(final)!r}).predict({str(poster)!r})); {heavy}",
        "--dataset": f"import sys; from postergenre.cli import main; main(['predict', '--dataset', {dataset!r}, "
                     f"'--models-dir', {str(models)!r}, {str(poster)!r}]); {heavy}",
        "the page": "import sys; from postergenre.predict.arguments import load_predictor; "
                    "from postergenre.serve.server import answer; "
                    f"print(answer(load_predictor({str(final)!r}), open({str(poster)!r}, 'rb').read(), 'image/jpeg', "
                    f"None)[0]); {heavy}",
    }
    for way, probe in probes.items():
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd="/", timeout=120)
        assert result.returncode == 0, (way, result.stderr)
        assert result.stderr.strip().splitlines()[-1] == "[]", (way, result.stderr)
