"""make serve in a real browser: headless Chromium (Debian's package) driven by Playwright."""
import json
import os
import statistics
import urllib.error
import urllib.request

import pytest

from posters.decode import load_image
from predict.models import load_model
from serve.__main__ import answer
from serve.bench import CHROMIUM, page_latencies, start_server
from tests.conftest import ROOT


@pytest.fixture
def server(trained):
    model = next((trained / "models").glob("*.safetensors"))
    process, url = start_server(model, max_mb=1)
    yield url, model
    process.terminate()
    process.wait()


def test_upload_limits(server, tmp_path):
    url, _ = server
    request = urllib.request.Request(url + "predict", data=b"\xff" * 1_500_000, method="POST",
                                     headers={"Content-Type": "image/jpeg"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    assert json.loads(refused.value.read())["error"] == "The file is 1.5 MB; the limit is 1 MB."


@pytest.mark.skipif(not CHROMIUM and not os.environ.get("CI"), reason="no chromium (apt install chromium)")
def test_page_in_a_real_browser(server, sample_dir, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, model = server
    poster = sorted((sample_dir / "images").iterdir())[0]
    predictor = load_model(model)
    status, expected = answer(predictor, poster.read_bytes(), "image/jpeg", None)
    assert status == 200
    (tmp_path / "notes.txt").write_text("not a poster")
    (tmp_path / "broken.jpg").write_bytes(poster.read_bytes()[:300])

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.goto(url)
        page.set_input_files("#file", str(poster))
        expect(page.locator("#result")).to_be_visible(timeout=30_000)
        assert page.locator("#chosen").inner_text() == ", ".join(expected["predicted"])
        names = page.locator(".bar .name").all_inner_texts()
        assert sorted(names) == sorted(predictor.genres)
        shown = [f"{expected['probabilities'][n]:.2f}" for n in names]
        assert page.locator(".bar span:last-child").all_inner_texts() == shown
        assert page.locator("#caption").inner_text() == f"Heatmap: {expected['heatmap_genre']}"

        other = next(n for n in names if n != expected["heatmap_genre"])
        page.locator(".bar", has_text=other).click()
        expect(page.locator("#caption")).to_have_text(f"Heatmap: {other}")
        assert page.locator("#heatmap").evaluate("img => img.naturalWidth") > 0
        (ROOT / "reports").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "reports" / "serve-screenshot.png"), full_page=True)

        latencies = page_latencies(page, poster, 7)
        (ROOT / "reports" / "serve-latency.json").write_text(json.dumps(
            {"model": predictor.name, "median_ms": statistics.median(latencies), "ms": latencies}))

        page.set_input_files("#file", str(tmp_path / "notes.txt"))
        expect(page.locator("#error")).to_have_text(
            "Not an image file (text/plain): upload a JPEG, PNG, WebP or GIF poster.")
        expect(page.locator("#result")).to_be_hidden()
        page.set_input_files("#file", str(tmp_path / "broken.jpg"))
        expect(page.locator("#error")).to_contain_text("Not a readable image: cannot decode image")
        browser.close()
    assert load_image(ROOT / "reports" / "serve-screenshot.png").size[0] >= 1000
