"""python -m bench.slow_clients --model FILE: does the page answer good requests while slow clients hold connections?

Starts `python -m postergenre.serve` (or, with --uvicorn, the same answer() behind Starlette on uvicorn, for comparison:
`pip install uvicorn starlette` first), opens --slow connections that each send one header line every --every
seconds and never finish, and meanwhile sends a good GET / every second for --seconds. Prints how many good
requests were answered, refused (503) or timed out, and the slowest answer.

With --forms N and --poster FILE, N clients instead post 9.9 MB forms of some 220,000 small parts, one after
another, and the good request is the poster posted to /predict: the page must answer it within 2 s.
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from postergenre.testing.browser import start_server

UVICORN_APP = """
import io, sys
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from postergenre.predict.models import load_model
from postergenre.serve.server import PAGE, answer, read_upload
predictor = load_model(sys.argv[1])
async def page(request):
    return HTMLResponse(PAGE.read_text())
async def predict(request):
    status, result = answer(predictor, *read_upload(await request.body(), request.headers.get("content-type", "")),
                            None)
    return JSONResponse(result, status_code=status)
app = Starlette(routes=[Route("/", page), Route("/predict", predict, methods=["POST"])])
import uvicorn
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def slow_client(url: str, every: float, until: float) -> None:
    address = urlsplit(url)
    try:
        with socket.create_connection((address.hostname, address.port), timeout=every + 5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            i = 0
            while time.monotonic() < until:
                time.sleep(every)
                sock.sendall(f"X-Slow-{i}: 1\r\n".encode())
                i += 1
    except OSError:
        pass  # the server hung up: what a deadline does


FORM = b"".join(b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\ny\r\n' for _ in range(220_000)) + b"--b--\r\n"


def form_client(url: str, until: float) -> None:
    """Post FORM (9.9 MB of small parts) again and again until `until`."""
    while time.monotonic() < until:
        request = urllib.request.Request(url + "predict", data=FORM, method="POST",
                                         headers={"Content-Type": "multipart/form-data; boundary=b"})
        try:
            urllib.request.urlopen(request, timeout=30).read()
        except OSError:
            pass  # refused, as it should be


def measure(url: str, slow: int, every: float, seconds: float, forms: int = 0, poster: bytes | None = None) -> dict:
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=slow_client, args=(url, every, until), daemon=True) for _ in range(slow)]
    threads += [threading.Thread(target=form_client, args=(url, until), daemon=True) for _ in range(forms)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    counts, slowest = {"answered": 0, "refused (503)": 0, "failed": 0}, 0.0
    while time.monotonic() < until:
        start = time.monotonic()
        good = url if poster is None else urllib.request.Request(
            url + "predict", data=poster, method="POST", headers={"Content-Type": "image/jpeg"})
        try:
            with urllib.request.urlopen(good, timeout=10) as response:
                response.read()
            counts["answered"] += 1
            slowest = max(slowest, time.monotonic() - start)
        except urllib.error.HTTPError as e:
            counts["refused (503)" if e.code == 503 else "failed"] += 1
        except OSError:
            counts["failed"] += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - start)))
    return {**counts, "slowest answer (s)": round(slowest, 3)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_clients", description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--slow", type=int, default=8, help="slow connections")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between a slow client's header lines")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--forms", type=int, default=0, help="clients posting forms of many small parts")
    parser.add_argument("--poster", default=None, help="with --forms: the poster the good requests post")
    parser.add_argument("--uvicorn", action="store_true", help="serve with uvicorn and Starlette instead")
    args = parser.parse_args(argv)
    if args.forms and not args.poster:
        parser.error("--forms needs --poster, the good request")
    if args.uvicorn:
        port = free_port()
        process = subprocess.Popen([sys.executable, "-c", UVICORN_APP, args.model, str(port)],
                                   cwd=Path(__file__).resolve().parents[1])
        url = f"http://127.0.0.1:{port}/"
        for _ in range(600):
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
    else:
        process, url = start_server(args.model)
    try:
        result = measure(url, args.slow, args.every, args.seconds, args.forms,
                         Path(args.poster).read_bytes() if args.poster else None)
    finally:
        process.terminate()
        process.wait()
    server = "uvicorn + Starlette" if args.uvicorn else "python -m postergenre.serve"
    good = "POST /predict of the poster" if args.poster else "GET /"
    forms = f", {args.forms} clients posting 9.9 MB forms of small parts" if args.forms else ""
    print(f"{server}, {args.slow} slow clients (a header line every {args.every:g} s){forms}, {args.seconds:g} s of "
          f"one good {good} a second: " + ", ".join(f"{k} {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
