"""python -m bench.slow_clients --model FILE: does the page answer good requests while slow clients hold connections?

Starts `python -m serve` (or, with --uvicorn, the same answer() behind Starlette on uvicorn, for comparison:
`pip install uvicorn starlette` first), opens --slow connections that each send one header line every --every
seconds and never finish, and meanwhile sends a good GET / every second for --seconds. Prints how many good
requests were answered, refused (503) or timed out, and the slowest answer.
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
from postergenre.serve.__main__ import PAGE, answer
predictor = load_model(sys.argv[1])
async def page(request):
    return HTMLResponse(PAGE.read_text())
async def predict(request):
    status, result = answer(predictor, await request.body(), request.headers.get("content-type", ""), None)
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


def measure(url: str, slow: int, every: float, seconds: float) -> dict:
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=slow_client, args=(url, every, until), daemon=True) for _ in range(slow)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    counts, slowest = {"answered": 0, "refused (503)": 0, "failed": 0}, 0.0
    while time.monotonic() < until:
        start = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
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
    parser.add_argument("--uvicorn", action="store_true", help="serve with uvicorn and Starlette instead")
    args = parser.parse_args(argv)
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
        result = measure(url, args.slow, args.every, args.seconds)
    finally:
        process.terminate()
        process.wait()
    server = "uvicorn + Starlette" if args.uvicorn else "python -m serve"
    print(f"{server}, {args.slow} slow clients (a header line every {args.every:g} s), {args.seconds:g} s of one "
          f"good GET / a second: " + ", ".join(f"{k} {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
