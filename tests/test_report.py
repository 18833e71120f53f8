"""The report's reproduce commands come from what a result records, never from the model's name; text from data
and model files is shown as text, never as markup."""
import base64
import dataclasses
import json
import os

import numpy as np
from PIL import Image

from postergenre.core.markup import markdown_to_html, md_text, slug
from postergenre.evaluation.card import genres_lines
from postergenre.evaluation.report import _command, write_html

CONFIG = {"epochs": 6, "augment": "light", "loss": "bce", "mixup": 0.0}


def finetune_result(model: str, **settings) -> dict:
    return {"kind": "finetune", "model": model, "data": "d", "backbone": "efficientnet_lite0", "freeze": "stage4",
            "image_size": 160, "config": CONFIG, **settings}


def test_the_input_size_flag_comes_from_the_result():
    given = finetune_result("renamed-by-hand", image_size_given=True)
    assert _command(given) == ('make finetune DATA=d BACKBONE=efficientnet_lite0 FREEZE=stage4 EPOCHS=6 '
                               'AUGMENT=light TRAIN_ARGS="--image-size 160"')
    # a name that looks like an explicit size changes nothing when the result says it was the default
    default = finetune_result("finetune-efficientnet_lite0-freeze-stage4-160px", image_size_given=False)
    assert "--image-size" not in _command(default)


HOSTILE = '<img src=x onerror=alert(1)> a|b ![x](/etc/secret.png) [link](javascript:alert(1))'


def test_report_html_shows_data_as_text_and_embeds_only_its_own_figures(tmp_path):
    """A genre, title or model name is text in report.html: no tag, link or foreign image gets through."""
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4), "red").save(secret)
    out = tmp_path / "reports"
    (out / "figures").mkdir(parents=True)
    Image.new("RGB", (4, 4), "blue").save(out / "figures" / "chart.png")
    (out / "report.md").write_text("\n".join([
        "# report", "", "![chart](figures/chart.png)", "",
        "| genre | AP |", "|---|---|", f"| {md_text(HOSTILE)} | 0.5 |", "",
        "A genre written raw, as an older report or a hand edit might: " + HOSTILE,
        f"![stolen]({secret})", "![climbing](../secret.png)", "![tracker](http://example.com/t.png)", ""]))
    page = write_html(out / "report.md").read_text()
    assert "<img src=x" not in page and "onerror=alert(1)>" not in page
    assert "href=" not in page
    assert page.count("data:image/png;base64,") == 1  # the report's own figure, and no other file
    assert base64.b64encode(secret.read_bytes()).decode() not in page and "http://example.com/t.png\"" not in page
    row = next(line for line in page.split("<tr>") if "onerror" in line)
    assert row.count("<td>") == 2  # the '|' inside the genre did not split its cell


def test_genre_names_in_cards_and_file_names_are_inert():
    lines = genres_lines([HOSTILE, "Action"], np.array([3, 40]))
    assert "<img" not in markdown_to_html("\n".join(lines))
    assert slug("../../etc/passwd\x00") == "etc-passwd" and slug("<>") == "x" and "/" not in slug(HOSTILE)


def test_odd_names_and_damaged_results_stop_no_report(tmp_path):
    """A genre that matplotlib would read as mathtext, a data set named with '$', an ensemble without members, a
    result that fits the schema but not what the report reads, a result naming another data set, a symlink to
    /dev/zero, a FIFO and a cut scores file: each is listed or said in the report, and every data set that is fine
    gets its section and charts."""
    from postergenre.evaluation.report import write_report
    from postergenre.heads.train import run_heads
    from tests.test_final import labelled_posters

    results, out = tmp_path / "results", tmp_path / "reports"
    good = labelled_posters()
    good = dataclasses.replace(good, genres=["Action", "$\\x$", "Comedy", "Rare"],
                               attrs={**good.attrs, "dataset": "odd$set"})
    run_heads(good, ["logistic"], tmp_path / "models", results)
    damaged = labelled_posters(seed=9)
    run_heads(damaged, ["logistic"], tmp_path / "models", results)
    head = json.loads((results / "toy" / "efficientnet_lite0-logistic.json").read_text())
    (results / "toy" / "ensemble.json").write_text(json.dumps({**head, "model": "ensemble", "kind": "ensemble"}))
    network = {"kind": "cnn", "config": {"epochs": 1, "augment": "light", "loss": "bce", "lr": 0.1, "seed": 0},
               "history": [], "best_epoch": 1, "run_dir": "/etc", "train_posters_per_s": "fast"}  # fits the schema
    (results / "toy" / "cnn-x.json").write_text(json.dumps({**head, "model": "cnn-x", **network}))
    (results / "toy" / "escape.json").write_text(json.dumps({**head, "model": "escape", "dataset": "../../escape"}))
    (results / "toy" / "zero.json").symlink_to("/dev/zero")
    os.mkfifo(results / "toy" / "fifo.json")
    scores = results / "odd$set" / "efficientnet_lite0-logistic.scores.npz"
    (results / "odd$set" / "baseline-prior.scores.npz").write_bytes(scores.read_bytes()[:100])  # cut

    report = write_report(results, tmp_path / "features", out, models_dir=tmp_path / "models").read_text()
    assert "## odd$set" in report and "![per-genre AP and F1](figures/odd-set-per-genre.png)" in report
    assert "## toy" in report and "*Not reported: its results could not be read (ValueError: Unknown format" in report
    assert (out / "figures" / "odd-set-per-genre.png").stat().st_size > 1000
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".png", ".md")}
    assert all(str(p).startswith("reports/") for p in written) and not (tmp_path.parent / "escape").exists()


def test_the_html_report_leaves_out_every_foreign_image_whatever_its_attributes(tmp_path):
    (tmp_path / "report.md").write_text('![x](http://example.com/t.png "a title")\n\n![y](/etc/x.png "t")\n')
    page = write_html(tmp_path / "report.md").read_text()
    assert "<img" not in page and "(image left out: http://example.com/t.png)" in page
