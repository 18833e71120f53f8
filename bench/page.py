"""python -m bench.page --model FILE --image P: latency of one prediction through the page, in Chromium.

Starts `python -m postergenre.serve`, uploads the poster again and again in headless Chromium (Debian's
package, driven by Playwright) and reads the page's own timing: upload, prediction, heatmap, drawing.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from postergenre.testing.browser import CHROMIUM, page_latencies, start_server


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
