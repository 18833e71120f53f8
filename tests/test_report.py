"""The report's reproduce commands come from what a result records, never from the model's name; text from data
and model files is shown as text, never as markup."""
import base64

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
