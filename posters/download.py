"""Download the posters named in a CSV's `Image URL` column into <out>/images/<anime_id>.<ext>.

Polite to the servers: a few requests at a time, a per-host rate limit, timeouts, and retries with
exponential backoff on connection errors, 429 and 5xx that honour Retry-After (urllib3's Retry does
the retrying); a 404 is final. Every body must decode as an image (with the loader every model
uses) before it is renamed into place, so a poster on disk is whole. A rerun skips the posters
already on disk and readable: an interrupted download resumes.
"""
from __future__ import annotations

import csv
import io
import shutil
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import urllib3
from PIL import Image
from tqdm import tqdm

from posters.data import DataError, find_image, read_rows
from posters.files import atomic_write
from posters.decode import load_image

RETRY_STATUSES = (429, 500, 502, 503, 504)
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif"}


@dataclass
class DownloadConfig:
    concurrency: int = 4  # requests in flight at once
    rate: float = 4.0  # requests per second to any one host
    timeout: float = 20.0  # seconds to connect, and between bytes of the answer
    retries: int = 4  # further attempts after a connection error, a 429 or a 5xx
    backoff: float = 1.0  # the n-th retry waits backoff * 2**(n-1) s, or what Retry-After says


@dataclass(frozen=True)
class Outcome:
    id: str
    url: str
    status: str  # downloaded | already there | failed
    reason: str = ""


class HostRateLimit:
    """At most `rate` request starts per second to each host, across threads."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self.next_start: dict[str, float] = {}
        self.lock = threading.Lock()

    def wait(self, url: str) -> None:
        host = urlsplit(url).netloc
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_start.get(host, now))
            self.next_start[host] = start + self.interval
        time.sleep(start - now)


def read_image_urls(csv_path: Path | str) -> list[tuple[str, str]]:
    """(anime_id, url) for every row of a Kaggle anime CSV; the url is "" where there is none."""
    header, rows = read_rows(Path(csv_path))
    if not {"anime_id", "Image URL"} <= set(header):
        raise DataError(f"{csv_path}: needs the columns anime_id and Image URL (has {', '.join(header)})")
    seen, urls = set(), []
    for row in rows:
        poster_id = (row["anime_id"] or "").strip()
        if poster_id and poster_id not in seen and None not in row.values():
            seen.add(poster_id)
            urls.append((poster_id, (row["Image URL"] or "").strip()))
    return urls


def _on_disk(images: Path, poster_id: str) -> bool:
    """Whether the poster is already there and decodes; a damaged file is removed, to be fetched again."""
    path = find_image(images, poster_id)
    if path is None:
        return False
    try:
        load_image(path)
        return True
    except DataError:
        path.unlink()
        return False


def _failure(error: urllib3.exceptions.HTTPError) -> str:
    reason = getattr(error, "reason", None) or error
    if isinstance(reason, urllib3.exceptions.TimeoutError):
        return "timeout"
    if isinstance(reason, urllib3.exceptions.ProtocolError) and "IncompleteRead" in str(reason):
        return "cut off mid-stream"
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return "cannot connect"
    if isinstance(reason, urllib3.exceptions.LocationParseError):
        return "bad URL"
    return f"connection error ({type(reason).__name__})"


def _fetch(http: urllib3.PoolManager, limit: HostRateLimit, images: Path, poster_id: str, url: str) -> Outcome:
    if _on_disk(images, poster_id):
        return Outcome(poster_id, url, "already there")
    if not url.lower().startswith(("http://", "https://")):
        return Outcome(poster_id, url, "failed", "no URL")
    limit.wait(url)
    try:
        response = http.request("GET", url)
    except urllib3.exceptions.HTTPError as e:
        return Outcome(poster_id, url, "failed", _failure(e))
    except ValueError:  # urllib3 refuses some malformed URLs before connecting
        return Outcome(poster_id, url, "failed", "bad URL")
    if response.status != 200:
        return Outcome(poster_id, url, "failed", f"HTTP {response.status}")
    body = response.data
    try:
        load_image(io.BytesIO(body))  # the whole body decodes, as the models will read it
        with Image.open(io.BytesIO(body)) as img:
            ext = EXTENSIONS[img.format]
    except (DataError, KeyError):
        return Outcome(poster_id, url, "failed", "not an image")
    with atomic_write(images / f"{poster_id}{ext}") as tmp:  # a full disk stops the run here
        tmp.write_bytes(body)
    return Outcome(poster_id, url, "downloaded")


def download(csv_path: Path | str, out: Path | str, cfg: DownloadConfig = DownloadConfig()) -> list[Outcome]:
    """Download every poster of `csv_path` into `out`/images, copy the CSV beside, list failures in a CSV."""
    csv_path, out = Path(csv_path), Path(out)
    urls = read_image_urls(csv_path)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    if not (out / csv_path.name).exists() or not (out / csv_path.name).samefile(csv_path):
        shutil.copyfile(csv_path, out / csv_path.name)  # the data set folder is then complete for make features
    retry = urllib3.Retry(total=cfg.retries, status_forcelist=RETRY_STATUSES, backoff_factor=cfg.backoff,
                          respect_retry_after_header=True, raise_on_status=False, allowed_methods={"GET"})
    http = urllib3.PoolManager(num_pools=16, maxsize=cfg.concurrency, retries=retry,
                               timeout=urllib3.Timeout(connect=cfg.timeout, read=cfg.timeout),
                               headers={"User-Agent": "postergenre poster downloader"})
    limit = HostRateLimit(cfg.rate)
    outcomes, failed = [], 0
    pool = ThreadPoolExecutor(cfg.concurrency)
    try:
        with tqdm(total=len(urls), unit="poster", desc="posters") as bar:
            for outcome in pool.map(lambda item: _fetch(http, limit, images, *item), urls):
                outcomes.append(outcome)
                failed += outcome.status == "failed"
                bar.update()
                bar.set_postfix(failed=failed, refresh=False)
    finally:  # on Ctrl-C: finish the requests in flight, start no more
        pool.shutdown(cancel_futures=True)
    _write_failures(out / "download-failures.csv", [o for o in outcomes if o.status == "failed"])
    return outcomes


def _write_failures(path: Path, failures: list[Outcome]) -> None:
    with atomic_write(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["anime_id", "url", "reason"])
        writer.writerows([o.id, o.url, o.reason] for o in failures)


def summary(outcomes: list[Outcome], seconds: float) -> str:
    counts = Counter(o.status for o in outcomes)
    reasons = Counter(o.reason for o in outcomes if o.status == "failed")
    failed = ", ".join(f"{reason} {n}" for reason, n in reasons.most_common())
    return (f"{counts['downloaded']} downloaded, {counts['already there']} already there, "
            f"{counts['failed']} failed{f' ({failed})' if failed else ''}; "
            f"{counts['downloaded'] / seconds:.1f} posters/s over {seconds:.1f} s")
