import csv
import io
import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import pytest
from PIL import Image

from postergenre.posters import download as download_module
from postergenre.posters.download import DownloadConfig, download, summary
from postergenre.testing.poster_server import PosterServer
from tests.conftest import run_module

FAST = DownloadConfig(concurrency=4, rate=1000, timeout=0.5, retries=2, backoff=0.05)


def poster(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (60, 90), (seed * 37 % 256, seed * 91 % 256, 120)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["anime_id", "Name", "Genres", "Image URL"])
        writer.writerows([poster_id, f"Anime {poster_id}", "Action, Comedy", url] for poster_id, url in rows)


# Each anime's URL, and whether its poster must end up on disk.
CASES = {
    "1": ("ok", True), "2": ("ok", True), "3": ("flaky", True), "4": ("busy", True), "5": ("cut-once", True),
    "6": ("missing", False), "7": ("slow", False), "8": ("cut", False), "9": ("html", False),
}


@pytest.fixture
def server():
    with PosterServer({pid: poster(int(pid)) for pid in CASES}, slow_seconds=2.0) as server:
        yield server


def test_download_keeps_exactly_the_whole_posters(server, tmp_path):
    csv_path = tmp_path / "anime-dataset-2023.csv"
    write_csv(csv_path, [(pid, f"{server.url}/{kind}/{pid}") for pid, (kind, _) in CASES.items()]
              + [("10", ""), ("11", "UNKNOWN")])
    out = tmp_path / "data"
    outcomes = download(csv_path, out, FAST)

    expected = sorted(f"{pid}.jpg" for pid, (_, kept) in CASES.items() if kept)
    assert sorted(p.name for p in (out / "images").iterdir()) == expected  # no partial or temporary file
    for name in expected:
        assert (out / "images" / name).read_bytes() == server.posters[name.removesuffix(".jpg")]
    assert (out / csv_path.name).read_bytes() == csv_path.read_bytes()

    reasons = {o.id: o.reason for o in outcomes if o.status == "failed"}
    assert reasons == {"6": "HTTP 404", "7": "timeout", "8": "cut off mid-stream", "9": "not an image",
                       "10": "no URL", "11": "no URL"}
    with open(out / "download-failures.csv", newline="") as f:
        assert {row["anime_id"]: row["reason"] for row in csv.DictReader(f)} == reasons

    assert server.count("/missing/6") == 1  # a 404 is final
    assert server.count("/flaky/3") == 2 and server.count("/cut/8") == 3  # retried: 1 + 2 retries
    busy = [t for path, t in server.requests if path == "/busy/4"]
    assert len(busy) == 2 and busy[1] - busy[0] >= 1.0  # waited as Retry-After said, not the 0.05 s backoff

    text = summary(outcomes, 1.0)
    assert text.startswith("5 downloaded, 0 already there, 6 failed (")
    assert "HTTP 404 1" in text and "no URL 2" in text


def test_rerun_fetches_only_what_is_missing_or_damaged(server, tmp_path):
    csv_path = tmp_path / "anime.csv"
    write_csv(csv_path, [(pid, f"{server.url}/ok/{pid}") for pid in ("1", "2", "3")])
    out = tmp_path / "data"
    download(csv_path, out, FAST)
    (out / "images" / "2.jpg").write_bytes(server.posters["2"][:300])  # damaged, e.g. by an earlier crash
    (out / "images" / "3.jpg").unlink()
    first = len(server.requests)

    outcomes = download(csv_path, out, FAST)
    assert {o.id: o.status for o in outcomes} == {"1": "already there", "2": "downloaded", "3": "downloaded"}
    assert sorted(path for path, _ in server.requests[first:]) == ["/ok/2", "/ok/3"]
    assert (out / "images" / "2.jpg").read_bytes() == server.posters["2"]


def test_rate_limit_spaces_requests_to_one_host(server, tmp_path):
    csv_path = tmp_path / "anime.csv"
    write_csv(csv_path, [(pid, f"{server.url}/ok/{pid}") for pid in ("1", "2", "3", "4", "5")])
    start = time.monotonic()
    download(csv_path, tmp_path / "data", DownloadConfig(concurrency=4, rate=10, timeout=2, retries=0))
    times = sorted(t for _, t in server.requests)
    assert len(times) == 5
    assert times[-1] - start >= 0.4  # 5 starts at 10 per second: 0, 0.1, ... 0.4 s
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.08


def test_command_line_summary_and_bad_csv(server, tmp_path):
    csv_path = tmp_path / "anime.csv"
    write_csv(csv_path, [("1", f"{server.url}/ok/1"), ("6", f"{server.url}/missing/6")])
    result = run_module("posters", "download", "--csv", str(csv_path), "--out-dir", str(tmp_path / "data"),
                        "--rate", "100")
    assert result.stdout.startswith("1 downloaded, 0 already there, 1 failed (HTTP 404 1); ")
    assert result.stdout.strip().endswith(f"failures listed in {tmp_path / 'data'}/download-failures.csv")

    (tmp_path / "covers.csv").write_text("id,title,genres\n1,A,Action\n")
    result = run_module("posters", "download", "--csv", str(tmp_path / "covers.csv"), "--out-dir", str(tmp_path / "x"),
                        check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'covers.csv'}: needs the columns anime_id and Image URL " \
                                    "(has id, title, genres)"
    assert not (tmp_path / "x").exists()


def test_interrupted_download_leaves_whole_files_and_resumes(server, tmp_path):
    server.posters.update({str(i): poster(i) for i in range(100, 120)})
    csv_path = tmp_path / "anime.csv"
    write_csv(csv_path, [(str(i), f"{server.url}/ok/{i}") for i in range(100, 120)])
    out = tmp_path / "data"
    command = [sys.executable, "-m", "postergenre.posters", "download", "--csv", str(csv_path), "--out-dir", str(out),
               "--rate", "5"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while len(list((out / "images").glob("*.jpg"))) < 3 and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # 5 posters a second: about 3 of 20 are down
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1 and stderr.strip().splitlines()[-1].startswith("interrupted: files written")
    kept = sorted((out / "images").iterdir())
    assert 3 <= len(kept) < 20
    assert all(path.read_bytes() == server.posters[path.stem] for path in kept)  # whole, no temporary files

    result = run_module("posters", "download", "--csv", str(csv_path), "--out-dir", str(out), "--rate", "100")
    assert result.stdout.startswith(f"{20 - len(kept)} downloaded, {len(kept)} already there, 0 failed")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_hostile_answers_stop_at_their_limits(tmp_path):
    with PosterServer({str(i): poster(i) for i in range(1, 9)}, slow_seconds=2.0, bomb_mb=50) as server:
        csv_path = tmp_path / "anime.csv"
        write_csv(csv_path, [("1", f"{server.url}/gzip-bomb/1"), ("2", f"{server.url}/padded/2"),
                             ("3", f"{server.url}/trickle/3"), ("4", f"{server.url}/away/4"),
                             ("5", f"{server.url}/ftp/5"), ("6", f"{server.url}/hop/6"),
                             ("7", f"http://127.0.0.1:{closed_port()}/ok/7"), ("8", f"{server.url}/port/8")])
        cfg = DownloadConfig(concurrency=4, rate=1000, timeout=0.5, deadline=1.5, max_mb=1, retries=1, backoff=0.05)
        start = time.monotonic()
        outcomes = download(csv_path, tmp_path / "data", cfg)
        assert time.monotonic() - start < 10
        assert {o.id: o.reason for o in outcomes if o.status == "failed"} == {
            "1": "over 1 MB",  # 50 MB once inflated: refused after about 1 MB
            "2": "over 1 MB",  # a poster followed by 50 MB of zeros: refused from its Content-Length
            "3": "over the 1.5 s deadline",  # a byte every 0.2 s never trips the 0.5 s read timeout
            "4": f"redirect to another site (localhost:{urlsplit(server.url).port})",
            "5": "redirect to a URL that is not http(s)", "7": "connection refused",
            "8": f"redirect to another site (127.0.0.1:{urlsplit(server.url).port + 1})"}  # another port: refused
        assert sorted(p.name for p in (tmp_path / "data" / "images").iterdir()) == ["6.jpg"]  # followed on-site
        assert server.count("/ok/4") == 0 and server.count("/ok/6") == 1  # the other host was never asked


def test_files_already_there_are_never_deleted(server, tmp_path):
    out = tmp_path / "data"
    (out / "images").mkdir(parents=True)
    Image.new("1", (7000, 7000)).save(out / "images" / "1.png")  # 49 megapixels: over the models' cap
    (out / "images" / "6.jpg").write_bytes(server.posters["6"][:300])  # damaged, and its URL is a 404
    outside = tmp_path / "victim.jpg"
    outside.write_text("notes")
    before = {p.name: p.read_bytes() for p in (out / "images").iterdir()}
    csv_path = tmp_path / "anime.csv"
    write_csv(csv_path, [("1", f"{server.url}/ok/1"), ("6", f"{server.url}/missing/6"),
                         ("../victim", f"{server.url}/ok/2"), (str(tmp_path / "victim"), f"{server.url}/ok/2")])
    outcomes = download(csv_path, out, FAST)
    assert {o.id: (o.status, o.reason) for o in outcomes} == {
        "1": ("already there", ""), "6": ("failed", "HTTP 404"),
        "../victim": ("failed", "id not a plain file name"),
        str(tmp_path / "victim"): ("failed", "id not a plain file name")}
    assert {p.name: p.read_bytes() for p in (out / "images").iterdir()} == before
    assert outside.read_text() == "notes" and sorted(p.name for p in tmp_path.iterdir()) == [
        "anime.csv", "data", "victim.jpg"]
    assert server.count("/ok/1") == 0 and server.count("/ok/2") == 0


def test_ctrl_c_cuts_requests_in_flight_and_lists_failures(tmp_path):
    with PosterServer({str(i): poster(i) for i in range(1, 9)}, slow_seconds=2.0) as server:
        csv_path = tmp_path / "anime.csv"
        write_csv(csv_path, [(str(i), f"{server.url}/trickle/{i}") for i in range(1, 9)])
        out = tmp_path / "data"
        process = subprocess.Popen([sys.executable, "-m", "postergenre.posters", "download", "--csv", str(csv_path),
                                    "--out-dir", str(out), "--rate", "100", "--deadline", "600"], cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(server.requests) < 4 and time.monotonic() < deadline:  # four trickling answers in flight
            time.sleep(0.05)
        time.sleep(0.5)
        start = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - start < 5
    assert process.returncode == 1 and stderr.strip().splitlines()[-1].startswith("interrupted: ")
    with open(out / "download-failures.csv", newline="") as f:
        assert [row["reason"] for row in csv.DictReader(f)] == ["interrupted"] * 4
    assert not list((out / "images").iterdir())


def test_no_answer_or_id_stops_the_run(tmp_path, monkeypatch):
    """A SPIDER image, an id of 300 bytes in 100 characters, and a fetch that raises what nothing expects: each
    is one failure, and the run ends with its failures CSV (a worker that died used to leave it waiting forever)."""
    spider = io.BytesIO()
    Image.new("F", (60, 90)).save(spider, "SPIDER")
    long_id = "\u3042" * 100
    real_fetch = download_module._fetch

    def fetch(fetcher, images, poster_id, url):
        if poster_id == "3":
            raise RuntimeError("a bug")
        return real_fetch(fetcher, images, poster_id, url)

    monkeypatch.setattr(download_module, "_fetch", fetch)
    with PosterServer({"1": poster(1), "2": spider.getvalue(), "3": poster(3)}) as server:
        csv_path = tmp_path / "anime.csv"
        write_csv(csv_path, [("1", f"{server.url}/ok/1"), ("2", f"{server.url}/ok/2"), ("3", f"{server.url}/ok/3"),
                             (long_id, f"{server.url}/ok/1")])
        outcomes = []
        run = threading.Thread(target=lambda: outcomes.extend(download(csv_path, tmp_path / "data", FAST)),
                               daemon=True)
        run.start()
        run.join(timeout=30)
        assert not run.is_alive()
    reasons = {"2": "not an image", "3": "unexpected error (RuntimeError)", long_id: "id not a plain file name"}
    assert {o.id: o.reason for o in outcomes if o.status == "failed"} == reasons
    with open(tmp_path / "data" / "download-failures.csv", newline="", encoding="utf-8") as f:
        assert {row["anime_id"]: row["reason"] for row in csv.DictReader(f)} == reasons
    assert sorted(p.name for p in (tmp_path / "data" / "images").iterdir()) == ["1.jpg"]
