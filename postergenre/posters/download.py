"""Download the posters named in a CSV's `Image URL` column into <out>/images/<anime_id>.<ext>.

Polite to the servers: a few requests at a time, a per-host rate limit, timeouts, and retries with
exponential backoff on connection errors, 429 and 5xx that honour Retry-After (up to 30 s); a 404
is final. Every body must decode as an image (with the loader every model uses) before it is
renamed into place, so a poster on disk is whole. A rerun skips the posters already on disk: an
interrupted download resumes.

Safe with a hostile CSV or server:
- an id that is not a plain file name is refused: nothing outside <out>/images is read or written;
- a file already there is never deleted: a readable poster (even one over the pixel cap) is kept,
  and a damaged one is replaced only by a whole download of the same name;
- a body is refused past `max_mb`, counted after decompression, so a gzip bomb stops there;
- each poster has a deadline, retries and waits included: a server trickling bytes cannot hold it;
- redirects are followed to http(s) on the same site only (the same host, or one under the same
  last two name labels: myanimelist.net -> cdn.myanimelist.net), at most 3 of them;
- Ctrl-C cuts the requests in flight, and the failures CSV is still written.
"""
from __future__ import annotations

import io
import queue
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import urllib3

from postergenre.core.errors import DataError
from postergenre.core.files import atomic_write, write_csv_atomic
from postergenre.core.progress import progress
from postergenre.posters.data import find_image, is_plain_name, read_rows
from postergenre.posters.decode import TooLarge, load_image, read_image

RETRY_STATUSES = (429, 500, 502, 503, 504)
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
MAX_REDIRECTS, MAX_RETRY_AFTER = 3, 30.0
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}


@dataclass
class DownloadConfig:
    """The downloader's settings; each is a flag of `python -m postergenre.posters download` (core.cli.add_settings)."""
    concurrency: int = field(default=4, metadata={"help": "requests in flight at once"})
    rate: float = field(default=4.0, metadata={"help": "requests per second to any one host"})
    timeout: float = field(default=20.0, metadata={"help": "seconds to connect, and between bytes of the answer"})
    deadline: float = field(default=120.0, metadata={"help": "seconds for one poster, retries and waits included"})
    max_mb: float = field(default=20.0, metadata={"help": "largest body accepted, in MB after decompression"})
    retries: int = field(default=4, metadata={"help": "further attempts after a connection error, a 429 or a 5xx"})
    backoff: float = field(default=1.0, metadata={"help": "the n-th retry waits BACKOFF * 2**(n-1) s, or what "
                                                          "Retry-After says"})


@dataclass(frozen=True)
class Outcome:
    id: str
    url: str
    status: str  # downloaded | already there | failed
    reason: str = ""


class Failed(Exception):
    """A poster that will not be fetched; the message is its reason in download-failures.csv."""


class Retryable(Failed):
    """A failure worth another attempt, after `wait` seconds if the server said so."""

    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


class HostRateLimit:
    """At most `rate` request starts per second to each host, across threads."""

    def __init__(self, rate: float, stop: threading.Event):
        self.interval = 1.0 / rate
        self.next_start: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop = stop

    def wait(self, url: str) -> None:
        host = urlsplit(url).netloc
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_start.get(host, now))
            self.next_start[host] = start + self.interval
        self.stop.wait(start - now)


def read_image_urls(csv_path: Path | str) -> list[tuple[str, str]]:
    """(anime_id, url) for every row of a Kaggle anime CSV; the url is "" where there is none."""
    header, rows = read_rows(Path(csv_path))
    if not {"anime_id", "Image URL"} <= set(header):
        raise DataError(f"{csv_path}: needs the columns anime_id and Image URL (has {', '.join(header)})")
    seen, urls = set(), []
    for row in rows:
        poster_id = (row["anime_id"] or "").strip()
        if poster_id and poster_id not in seen and None not in row and None not in row.values():
            seen.add(poster_id)
            urls.append((poster_id, (row["Image URL"] or "").strip()))
    return urls


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a port that is not a number
        port = None
    return parts.scheme, parts.hostname, port


def same_site(url: str, target: str) -> bool:
    """The redirect rule: the same scheme, host and port (another port of the same host is another server)."""
    origin = _origin(url)
    return origin[1] is not None and origin[2] is not None and _origin(target) == origin


def _connection_failure(error: urllib3.exceptions.HTTPError) -> Retryable:
    reason = getattr(error, "reason", None) or error
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        return Retryable("host not found")
    if isinstance(reason, urllib3.exceptions.NewConnectionError):  # before TimeoutError: it subclasses it
        return Retryable("connection refused" if "refused" in str(reason).lower() else "cannot connect")
    if isinstance(reason, urllib3.exceptions.TimeoutError):
        return Retryable("timeout")
    if isinstance(reason, urllib3.exceptions.ProtocolError) and "IncompleteRead" in str(reason):
        return Retryable("cut off mid-stream")
    if isinstance(reason, urllib3.exceptions.LocationParseError):
        raise Failed("bad URL")
    return Retryable(f"connection error ({type(reason).__name__})")


class Fetcher:
    """GETs with retries, redirects by the rule, a size cap and a deadline; `stop` cuts them all short."""

    def __init__(self, cfg: DownloadConfig):
        self.cfg = cfg
        self.stop = threading.Event()
        self.limit = HostRateLimit(cfg.rate, self.stop)
        self.http = urllib3.PoolManager(num_pools=16, maxsize=cfg.concurrency, retries=False,
                                        headers={"User-Agent": "postergenre poster downloader"})
        self.in_flight: set[urllib3.BaseHTTPResponse] = set()
        self.lock = threading.Lock()

    def get(self, url: str) -> bytes:
        deadline = time.monotonic() + self.cfg.deadline
        for attempt in range(self.cfg.retries + 1):
            try:
                return self._follow(url, deadline)
            except Retryable as e:
                failure = e
            wait = self.cfg.backoff * 2 ** attempt if failure.wait is None else min(failure.wait, MAX_RETRY_AFTER)
            if attempt == self.cfg.retries or time.monotonic() + wait > deadline:
                break
            if self.stop.wait(wait):
                raise Failed("interrupted")
        raise Failed(str(failure))

    def cancel(self) -> None:
        """Stop every fetch: the ones waiting return, the ones reading are cut."""
        self.stop.set()
        with self.lock:
            for response in list(self.in_flight):
                response.shutdown()

    def _follow(self, url: str, deadline: float) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            self.limit.wait(url)
            if self.stop.is_set():
                raise Failed("interrupted")
            response = self._open(url, deadline)
            if response.status not in REDIRECT_STATUSES:
                return self._read(response, deadline)
            target = urljoin(url, response.get_redirect_location() or "")
            response.close()  # its body is not read: the connection is not reused
            response.release_conn()
            if urlsplit(target).scheme not in ("http", "https"):
                raise Failed("redirect to a URL that is not http(s)")
            if not same_site(url, target):
                raise Failed(f"redirect to another site ({urlsplit(target).netloc[:100]})")
            url = target
        raise Failed("too many redirects")

    def _open(self, url: str, deadline: float) -> urllib3.BaseHTTPResponse:
        left = max(0.1, deadline - time.monotonic())
        timeout = urllib3.Timeout(connect=min(self.cfg.timeout, left), read=min(self.cfg.timeout, left))
        try:
            return self.http.request("GET", url, preload_content=False, redirect=False, timeout=timeout)
        except urllib3.exceptions.HTTPError as e:
            raise _connection_failure(e) from None
        except ValueError:  # urllib3 refuses some malformed URLs before connecting
            raise Failed("bad URL") from None

    def _read(self, response: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
        limit, whole = int(self.cfg.max_mb * 1e6), False
        with self.lock:
            self.in_flight.add(response)
        try:
            if response.status in RETRY_STATUSES:
                retry_after = urllib3.Retry().get_retry_after(response)
                raise Retryable(f"HTTP {response.status}", retry_after)
            if response.status != 200:
                raise Failed(f"HTTP {response.status}")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise Failed(f"over {self.cfg.max_mb:g} MB")
            body = bytearray()
            while chunk := response.read1(1 << 16):  # at most 64 KiB at a time, after decompression
                body += chunk
                if len(body) > limit:
                    raise Failed(f"over {self.cfg.max_mb:g} MB")
                if time.monotonic() > deadline:
                    raise Failed(f"over the {self.cfg.deadline:g} s deadline")
            if self.stop.is_set():
                raise Failed("interrupted")
            whole = True
            return bytes(body)
        except urllib3.exceptions.HTTPError as e:
            raise (Failed("interrupted") if self.stop.is_set() else _connection_failure(e)) from None
        finally:
            with self.lock:
                self.in_flight.discard(response)
            if not whole:
                response.close()  # the rest of a refused body is never read: the connection is not reused
            response.release_conn()


def _on_disk(images: Path, poster_id: str) -> bool:
    """Whether a readable poster is there. A damaged file is left in place; a whole download replaces it."""
    path = find_image(images, poster_id)
    if path is None:
        return False
    try:
        load_image(path)
        return True
    except TooLarge:  # a real poster, only too large for the models: it is the user's, and stays
        return True
    except DataError:
        return False


def _fetch(fetcher: Fetcher, images: Path, poster_id: str, url: str) -> Outcome:
    if not is_plain_name(poster_id):
        return Outcome(poster_id, url, "failed", "id not a plain file name")
    if _on_disk(images, poster_id):
        return Outcome(poster_id, url, "already there")
    if not url.lower().startswith(("http://", "https://")):
        return Outcome(poster_id, url, "failed", "no URL")
    try:
        body = fetcher.get(url)
    except Failed as e:
        return Outcome(poster_id, url, "failed", str(e))
    try:
        ext = EXTENSIONS[read_image(io.BytesIO(body))[1]]  # the whole body decodes, as the models will read it
    except (DataError, KeyError):
        return Outcome(poster_id, url, "failed", "not an image")
    with atomic_write(images / f"{poster_id}{ext}") as tmp:  # a full disk stops the run here
        tmp.write_bytes(body)
    return Outcome(poster_id, url, "downloaded")


def download(csv_path: Path | str, out: Path | str, cfg: DownloadConfig = DownloadConfig()) -> list[Outcome]:
    """Download every poster of `csv_path` into `out`/images, copy the CSV beside, list failures in a CSV.

    On Ctrl-C the requests in flight are cut, the failures so far are listed, and KeyboardInterrupt is raised.
    """
    csv_path, out = Path(csv_path), Path(out)
    urls = read_image_urls(csv_path)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    if not (out / csv_path.name).exists() or not (out / csv_path.name).samefile(csv_path):
        shutil.copyfile(csv_path, out / csv_path.name)  # the data set folder is then complete for make features
    fetcher = Fetcher(cfg)
    todo, done = queue.SimpleQueue(), queue.SimpleQueue()
    for item in urls:
        todo.put(item)

    def work() -> None:
        while not fetcher.stop.is_set():
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                outcome = _fetch(fetcher, images, *item)
            except Exception as e:  # noqa: BLE001 - one poster, whatever went wrong with it, never stops the run
                outcome = Outcome(item[0], item[1], "failed", f"unexpected error ({type(e).__name__})")
            done.put(outcome)

    # Daemon threads, not a ThreadPoolExecutor: its workers are joined at exit, so one request still waiting for a
    # slow server's headers (which cancel() cannot cut) would hold Ctrl-C for up to --timeout.
    workers = [threading.Thread(target=work, daemon=True) for _ in range(cfg.concurrency)]
    for worker in workers:
        worker.start()
    outcomes, failed = [], 0
    try:
        with progress(total=len(urls), unit="poster", desc="posters") as bar:
            while len(outcomes) < len(urls):
                outcomes.append(done.get())
                failed += outcomes[-1].status == "failed"
                bar.update()
                bar.set_postfix(failed=failed, refresh=False)
    except KeyboardInterrupt:
        fetcher.cancel()
        for worker in workers:
            worker.join(timeout=5)
        while not done.empty():
            outcomes.append(done.get())
        raise
    finally:
        _write_failures(out / "download-failures.csv", [o for o in outcomes if o.status == "failed"])
    return outcomes


def _write_failures(path: Path, failures: list[Outcome]) -> None:
    write_csv_atomic(path, ["anime_id", "url", "reason"], ([o.id, o.url, o.reason] for o in failures))


def summary(outcomes: list[Outcome], seconds: float) -> str:
    counts = Counter(o.status for o in outcomes)
    reasons = Counter(o.reason for o in outcomes if o.status == "failed")
    failed = ", ".join(f"{reason} {n}" for reason, n in reasons.most_common())
    return (f"{counts['downloaded']} downloaded, {counts['already there']} already there, "
            f"{counts['failed']} failed{f' ({failed})' if failed else ''}; "
            f"{counts['downloaded'] / seconds:.1f} posters/s over {seconds:.1f} s")
