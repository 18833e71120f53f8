"""The whole two-stage pipeline on a slice of the real anime posters, through the same commands as make:
split, features, heads, final, report, predict."""
import csv
import json
import os
import re
from pathlib import Path

import pytest

from postergenre.evaluation.compare import choosing_score, picked
from postergenre.testing.browser import CHROMIUM
from tests.conftest import run_module

POSTERS = 300


@pytest.fixture(scope="module")
def anime_slice(data_root, tmp_path_factory) -> Path:
    """`make split features heads final report` on a slice of the anime posters, in a folder of its own."""
    tmp_path = tmp_path_factory.mktemp("end-to-end")
    source = data_root / "anime-posters"
    data = tmp_path / "anime-slice"
    data.mkdir()
    with open(source / "anime-dataset-2023.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    with open(data / "anime.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows[:POSTERS + 1])
    (data / "images").symlink_to(source / "images")
    unseen = tmp_path / "anime-unseen"  # labelled posters the slice's models never saw
    unseen.mkdir()
    with open(unseen / "anime.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows[:1] + rows[POSTERS + 1:POSTERS + 61])
    (unseen / "images").symlink_to(source / "images")

    split, features = tmp_path / "anime-slice-split.json", tmp_path / "anime-slice-efficientnet_lite0.h5"
    results, models, reports = tmp_path / "results", tmp_path / "models", tmp_path / "reports"
    run_module("posters", "split", "--data", str(data), "--out", str(split))
    run_module("extract", "--data", str(data), "--split", str(split), "--backbone", "efficientnet_lite0",
               "--out", str(features), "--tta")
    run_module("heads", "--features", str(features), "--models-dir", str(models), "--results-dir", str(results),
               "--heads", "mlknn", "mlp", "--cv", "none")
    run_module("heads", "--features", str(features), "--models-dir", str(models), "--results-dir", str(results),
               "--heads", "logistic", "--cv", "3x1")
    run_module("heads.final", "--features", str(features), "--models-dir", str(models), "--results-dir", str(results))
    run_module("evaluation.report", "--results-dir", str(results), "--features-dir", str(tmp_path),
               "--out-dir", str(reports), "--genre-table", str(data_root / "anime-dataset-2023-genres.csv"),
               "--models-dir", str(models))
    return tmp_path


def test_split_features_heads_report(anime_slice, data_root):
    tmp_path, source, data = anime_slice, data_root / "anime-posters", anime_slice / "anime-slice"
    split = tmp_path / "anime-slice-split.json"
    results, models, reports = tmp_path / "results", tmp_path / "models", tmp_path / "reports"
    models_written = {p.stem for p in (results / "anime-slice").glob("*.json")}
    assert models_written == {"baseline-prior", "baseline-top3-frequent", "efficientnet_lite0-logistic",
                              "efficientnet_lite0-mlknn", "efficientnet_lite0-mlp"}
    assert len(list(models.glob("anime-slice-efficientnet_lite0-*.skops"))) == 3
    assert (models / "anime-slice-final.skops").is_file() and (models / "anime-slice-final.md").is_file()

    def test_map(model: str) -> float:
        return json.loads((results / "anime-slice" / f"{model}.json").read_text())["test"]["overall"]["mAP_macro"]
    assert test_map("efficientnet_lite0-logistic") > test_map("baseline-prior") + 0.05

    report = (reports / "report.md").read_text()
    for model in models_written:
        assert re.search(f"^\\| {model}( \\(picked\\))? \\|", report, re.M)
    # the section opens with its headline: the picked model, its interval, its margin over the prior
    section = report[report.index("## anime-slice"):]
    choice = picked([json.loads((results / "anime-slice" / f"{m}.json").read_text()) for m in models_written])
    rule, picked_name = choosing_score(choice)[1], choice["model"]
    assert section.splitlines()[2].startswith(f"**Headline.** The {rule} picks **{picked_name}**")
    assert re.search(r"test mAP \d\.\d{3} \(\d\.\d{3}–\d\.\d{3}\) on \d+ test posters", section)
    assert "above the prior baseline" in section and "distinguishable from" in section
    assert f"**Final model.** `{models / 'anime-slice-final.skops'}`" in section
    assert re.search(r"each of \d+ franchise groups in one part .*, so no test poster's franchise is in training",
                     section) and "not grouped by franchise" not in section
    row = next(line for line in report.splitlines()  # the results table's row, not the headline's
               if line.startswith("| efficientnet_lite0-mlknn |") and line.count("|") > 10)
    assert len(re.findall(r"\d\.\d{3} \(\d\.\d{3}–\d\.\d{3}\)", row)) == 3  # mAP, F1 µ and top-1
    cv = json.loads((results / "anime-slice" / "efficientnet_lite0-logistic.json").read_text())["cv"]
    assert len(cv["mAP_macro"]["values"]) == 3
    assert f"| efficientnet_lite0-logistic | {cv['mAP_macro']['mean']:.3f} ± {cv['mAP_macro']['std']:.3f} |" in report
    assert "make features heads report DATA=" in report and "| hamming | ECE |" in report
    for figure in ("classes", "per-genre", "pr-curves", "reliability", "cooccurrence", "examples"):
        assert (reports / "figures" / f"anime-slice-{figure}.png").stat().st_size > 1000, figure
        assert f"](figures/anime-slice-{figure}.png)" in section
    # the picked model's recall sets on the test part, their thresholds from its validation scores
    assert len(re.findall(r"^\| recall 0\.(8|9|95) \| \d\.\d{4} \| \d\.\d{3} \(\d\.\d{3}-\d\.\d{3}\) \| \d+\.\d\d \|$",
                          section, re.M)) == 3
    assert report.index("## anime-slice") < report.index("## Appendix: the full Kaggle anime 2023 genre table")
    assert (reports / "figures" / "kaggle-anime-2023-classes.png").stat().st_size > 1000
    only = tmp_path / "only"  # make report DATA=<another set>: that set alone, no appendix
    run_module("evaluation.report", "--results-dir", str(results), "--features-dir", str(tmp_path), "--out-dir",
               str(only), "--models-dir", str(models), "--datasets", "another-set")
    alone = (only / "report.md").read_text()
    assert "## anime-slice" not in alone and "Appendix" not in alone

    # make predict on the test part scores exactly as the evaluation module did (TTA and all)
    for head in ("logistic", "mlknn"):
        out = tmp_path / f"predictions-{head}.csv"
        run_module("predict", "--model", str(models / f"anime-slice-efficientnet_lite0-{head}.skops"),
                   "--data", str(data), "--split", str(split), "--out", str(out))
        predicted = json.loads(out.with_suffix(".json").read_text())
        evaluated = json.loads((results / "anime-slice" / f"efficientnet_lite0-{head}.json").read_text())
        assert predicted["scores"] == evaluated["test"]
        assert len(out.read_text().splitlines()) == 1 + len(json.loads(split.read_text())["parts"]["test"])

    # without --model, predict uses the final model and says so
    out = tmp_path / "predictions-final.csv"
    result = run_module("predict", "--dataset", "anime-slice", "--models-dir", str(models), "--results-dir",
                        str(results), "--images", str(source / "images" / "1.jpg"), "--out", str(out))
    assert f"model: {models / 'anime-slice-final.skops'} (anime-slice's final model" in result.stderr
    assert len(out.read_text().splitlines()) == 2
    refused = run_module("predict", "--model", str(models / "anime-slice-final.skops"), "--data", str(data),
                         "--split", str(split), check=False)
    assert refused.returncode == 1 and "is a final model, refit on every labelled poster" in refused.stderr
    # on labelled posters it never saw, its recall sets' realised recall
    result = run_module("predict", "--model", str(models / "anime-slice-final.skops"), "--recall", "0.9",
                        "--data", str(anime_slice / "anime-unseen"), "--out", str(out))
    realised = json.loads(out.with_suffix(".json").read_text())["recall"]["realised"]
    assert f"recall 0.9: realised {realised['recall']:.3f} ({realised['low']:.3f}-" in result.stderr


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM and not os.environ.get("CI"), reason="no chromium (apt install chromium)")
def test_the_html_report_opens_in_a_browser(anime_slice):
    """The HTML report, self-contained, in headless Chromium: its headline shows and every chart loads."""
    results = anime_slice / "results" / "anime-slice"
    choice = picked([json.loads(p.read_text()) for p in results.glob("*.json")])
    headline = f"The {choosing_score(choice)[1]} picks {choice['model']}"
    path = anime_slice / "reports" / "report.html"
    html = path.read_text()
    assert "<img" in html and 'src="figures/' not in html  # every image embedded
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page()
        page.goto(path.as_uri())
        assert headline in page.locator("body").inner_text()
        widths = page.locator("img").evaluate_all("images => images.map(i => i.naturalWidth)")
        assert len(widths) >= 6 and min(widths) > 0
        browser.close()

