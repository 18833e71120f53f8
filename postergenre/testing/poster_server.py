"""A poster web server on 127.0.0.1 that misbehaves on request, for the downloader's tests and benchmark.

/ok/<name> serves posters[name]; /missing/<name> is a 404; /flaky/<name> a 500 once, then the
poster; /busy/<name> a 429 with Retry-After: 1 once, then the poster; /slow/<name> answers after
`slow_seconds`; /cut/<name> sends half the announced bytes and hangs up, every time, /cut-once/<name>
the first time only; /html/<name> is an HTML page with status 200.

Hostile answers: /gzip-bomb/<name> is gzip that inflates to `bomb_mb` MB of zeros; /padded/<name>
the poster followed by `bomb_mb` MB of zeros; /trickle/<name> one byte every `slow_seconds` / 10;
/away/<name> redirects to another host (localhost), /port/<name> to another port of this host,
/ftp/<name> to an ftp:// URL and /hop/<name> to /ok/<name> on this host.
"""
from __future__ import annotations

import gzip
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PosterServer:
    def __init__(self, posters: dict[str, bytes], slow_seconds: float = 2.0, bomb_mb: int = 50):
        self.posters, self.slow_seconds = posters, slow_seconds
        self.bomb = gzip.compress(b"\0" * bomb_mb * 1_000_000, 9)
        self.padding = b"\0" * bomb_mb * 1_000_000
        self.requests: list[tuple[str, float]] = []  # (path, time.monotonic()) of every request
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner, self.httpd.daemon_threads = self, True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "PosterServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, path: str) -> int:
        with self.lock:
            return sum(p == path for p, _ in self.requests)


class _Handler(BaseHTTPRequestHandler):
    """Answers as the path asks (the module's list), for the PosterServer that owns its server."""
    def do_GET(self) -> None:
        server = self.server.owner
        with server.lock:
            server.requests.append((self.path, time.monotonic()))
            seen = Counter(path for path, _ in server.requests)[self.path]
        _, kind, name = self.path.split("/", 2)
        body = server.posters.get(name)
        if body is None or kind == "missing":
            return self._answer(404, b"not found")
        if kind == "flaky" and seen == 1:
            return self._answer(500, b"server error")
        if kind == "busy" and seen == 1:
            return self._answer(429, b"slow down", {"Retry-After": "1"})
        if kind == "slow":
            time.sleep(server.slow_seconds)
        if kind == "gzip-bomb":
            return self._answer(200, server.bomb, {"Content-Type": "image/jpeg", "Content-Encoding": "gzip"})
        if kind == "padded":
            return self._answer(200, body + server.padding, {"Content-Type": "image/jpeg"})
        if kind in ("away", "ftp", "hop", "port"):
            port = server.httpd.server_address[1]
            target = {"away": f"http://localhost:{port}/ok/{name}", "ftp": f"ftp://127.0.0.1/{name}",
                      "hop": f"/ok/{name}", "port": f"http://127.0.0.1:{port + 1}/ok/{name}"}[kind]
            return self._answer(302, b"", {"Location": target})
        if kind == "trickle":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(len(body)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(server.slow_seconds / 10)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return None
        if kind == "html":
            return self._answer(200, b"<html><body>Please log in</body></html>", {"Content-Type": "text/html"})
        if kind == "cut" or (kind == "cut-once" and seen == 1):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return None
        return self._answer(200, body, {"Content-Type": "image/jpeg"})

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
            pass

    def log_message(self, *args) -> None:  # quiet
        pass
