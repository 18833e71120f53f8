"""python -m bench.downloads: the poster downloader against a local server.

Times 2,000 small real posters served from 127.0.0.1, then a run where a tenth of the URLs fail
in every way the server knows (404, 500 once, 429 once, too slow, cut off, HTML), and counts the
files on disk that are not exactly what the server sent: that count must be 0.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import tempfile
import time
from pathlib import Path

from postergenre.posters.data import read_posters
from postergenre.posters.download import DownloadConfig, download, summary
from postergenre.testing.poster_server import PosterServer

FAULTS = ("missing", "flaky", "busy", "slow", "cut", "cut-once", "html")


def _csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["anime_id", "Genres", "Image URL"])
        writer.writerows([poster_id, "Action", url] for poster_id, url in rows)
    return path


def wrong_files(images: Path, server: PosterServer) -> int:
    """Files that are not byte for byte a poster the server sent whole, temporary files included."""
    return sum(path.suffix != ".jpg" or server.posters.get(path.stem) != path.read_bytes()
               for path in images.iterdir())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.downloads", description=__doc__)
    parser.add_argument("--data", required=True, help="a data set folder whose posters are served")
    parser.add_argument("--posters", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    files = itertools.cycle([p.image.read_bytes() for p in read_posters(args.data).posters])
    posters = {str(i): next(files) for i in range(args.posters)}
    cfg = DownloadConfig(concurrency=args.concurrency, rate=1000, timeout=0.5, retries=2, backoff=0.05)
    kb = sum(map(len, posters.values())) / len(posters) / 1024
    with PosterServer(posters, slow_seconds=1.0) as server, tempfile.TemporaryDirectory() as tmp:
        clean = _csv(Path(tmp) / "clean.csv", [(i, f"{server.url}/ok/{i}") for i in posters])
        start = time.perf_counter()
        outcomes = download(clean, Path(tmp) / "clean", cfg)
        print(f"clean: {summary(outcomes, time.perf_counter() - start)} "
              f"({len(posters)} posters of {kb:.0f} kB on average, concurrency {cfg.concurrency})")

        kinds = ["ok"] * 63 + list(FAULTS)  # a tenth of the URLs misbehave
        faulty = _csv(Path(tmp) / "faulty.csv", [(i, f"{server.url}/{kind}/{i}")
                                                 for i, kind in zip(posters, itertools.cycle(kinds))])
        start = time.perf_counter()
        outcomes = download(faulty, Path(tmp) / "faulty", cfg)
        print(f"with faults: {summary(outcomes, time.perf_counter() - start)}")
        print(f"files on disk that are wrong or partial: {wrong_files(Path(tmp) / 'faulty' / 'images', server)}")


if __name__ == "__main__":
    main()
