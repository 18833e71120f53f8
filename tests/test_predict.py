"""make predict with a network saved by the training loop (a tiny PosterNet on the synthetic sample)."""
import csv
import json
import re
import shutil

import pytest

from postergenre.posters.split import Split
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
    result = run_module("predict", "--model", model, "--data", str(relabelled), "--split", str(sample_split),
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
            f"({dataset}'s saved model picked by cross-validated or validation mAP)") in result.stderr
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
        f"error: no saved model of elsewhere in {trained / 'models'}/ (make heads, finetune or cnn save them); "
        f"pass one of: {dataset}-cnn-posternet-4-8-8-8.safetensors")
