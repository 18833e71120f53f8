"""python -m bench.page --model FILE --image P: latency of one prediction through the page, in Chromium.

Starts `python -m serve`, uploads the poster again and again in headless Chromium (Debian's
package, driven by Playwright) and reads the page's own timing: upload, prediction, heatmap, drawing.
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def start_server(model: Path | str, max_mb: float = 10.0, *flags: str) -> tuple[subprocess.Popen, str]:
    """`python -m serve` on a free port (more `flags` passed on); returns the process and its URL once it serves."""
    process = subprocess.Popen([sys.executable, "-m", "serve", "--model", str(model), "--port", "0",
                                "--max-mb", str(max_mb), *flags], cwd=Path(__file__).resolve().parents[1],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()  # "serving <model> on http://127.0.0.1:<port>/"
    if not line.startswith("serving "):
        process.kill()
        raise RuntimeError(f"python -m serve did not start: {line!r}")
    return process, line.split(" on ")[1].strip()


def page_latencies(page, poster: Path | str, times: int) -> list[int]:
    """Milliseconds the page reports for `times` uploads of `poster` (page: a Playwright page, already open)."""
    from playwright.sync_api import expect

    latencies = []
    for _ in range(times):
        page.evaluate("document.getElementById('latency').textContent = ''")
        page.set_input_files("#file", [])
        page.set_input_files("#file", str(poster))
        expect(page.locator("#latency")).to_have_text(re.compile(r"answered in \d+ ms"), timeout=60_000)
        latencies.append(int(page.locator("#latency").inner_text().split()[2]))
    return latencies


def main(argv: list[str] | None = None) -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(prog="python -m bench.page", description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--times", type=int, default=11)
    args = parser.parse_args(argv)
    if not CHROMIUM:
        sys.exit("bench.page: no chromium found (apt install chromium); skipped")
    process, url = start_server(args.model)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page()
            page.goto(url)
            latencies = page_latencies(page, args.image, args.times + 1)[1:]  # the first warms up
            browser.close()
    finally:
        process.terminate()
        process.wait()
    print(f"page latency, {Path(args.model).stem}: median {statistics.median(latencies):.0f} ms "
          f"over {len(latencies)} uploads (min {min(latencies)}, max {max(latencies)})")


if __name__ == "__main__":
    main()
