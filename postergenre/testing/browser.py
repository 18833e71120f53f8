"""The page in headless Chromium (Debian's package, driven by Playwright): `python -m postergenre.serve` on a free
port, and the latencies the page itself reports, for the serve tests and bench.page."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def start_server(model: Path | str, max_mb: float = 10.0, *flags: str) -> tuple[subprocess.Popen, str]:
    """`python -m postergenre.serve` on a free port (more `flags` passed on); returns the process and its URL once
    it serves."""
    process = subprocess.Popen([sys.executable, "-m", "postergenre.serve", "--model", str(model), "--port", "0",
                                "--max-mb", str(max_mb), *flags],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()  # "serving <model> on http://127.0.0.1:<port>/"
    if not line.startswith("serving "):
        process.kill()
        raise RuntimeError(f"python -m postergenre.serve did not start: {line!r}")
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
