"""The local page where anyone can try a poster, and /predict (`postergenre serve`, serve/__main__.py).

The page (serve/page.html) posts the raw bytes of the chosen poster to /predict and shows the
poster, the genre probabilities, the predicted set, the thresholds that chose it and, for a network,
a Grad-CAM heatmap. The model is loaded once at start. /predict also takes a form upload
(`curl -F file=@poster.jpg http://127.0.0.1:8000/predict`) and answers JSON: probabilities,
predicted, thresholds, recall, heatmap (base64 PNG or null) and heatmap_genre; `?genre=G` asks for G's heatmap,
and `?recall=0.9` for the set of that recall level (a final head's, evaluation/recall.py), which the page offers;
`?title=...` has a final model's title head answer with the poster (predict/titles.py), where it has one: the page
then shows a title field, and the answer's `input` says whether the title was used.
No web framework: one page and one endpoint fit the standard library's ThreadingHTTPServer, so
serving adds no dependency.

Limits, so that no client can hold the server: uploads over --max-mb are refused unread, a
Content-Length that is missing (411) or not a number (400) is refused, images over
MAX_UPLOAD_PIXELS are refused from their header before decoding, a request whose line, headers
and body have not all arrived --timeout seconds after it connected is cut off (a total deadline:
a client sending a header line every few seconds never trips a per-read timeout), and at most
--max-clients connections are served at once: the next ones get a 503 at once, without a thread.
"""
import base64
import html
import io
import json
import re
import socket
import sys
import threading
import time
from email.message import Message
from email.parser import BytesHeaderParser
from dataclasses import dataclass, field
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from postergenre.core.errors import DataError
from postergenre.evaluation.recall import chosen_sets
from postergenre.evaluation.sets import genre_names
from postergenre.posters.decode import load_image
from postergenre.predict.arguments import Predicts
from postergenre.predict.titles import Fused

PAGE = Path(__file__).with_name("page.html")
DRAIN_LIMIT = 100_000_000  # larger uploads are cut off unread
MAX_UPLOAD_PIXELS = 16_000_000  # 4000x4000: ten times any poster seen; larger ones cost seconds and GBs to decode
ACCEPTED_TYPES = ("image/", "application/octet-stream")  # browsers send "" or octet-stream for unknown types
MAX_FORM_PARTS, MAX_PART_HEADER = 8, 8192  # a form needs a file field and a few others; its headers are short


class UploadError(ValueError):
    """An upload the page cannot take: its HTTP status and the one line that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def read_upload(body: bytes, content_type: str) -> tuple[bytes, str]:
    """The poster of a request body and its type: the raw bytes the page posts, or the first file of a
    multipart/form-data upload (`curl -F file=@poster.jpg`). A form is split flat, with at most MAX_FORM_PARTS
    parts and nothing parsed inside a part, so that no body of many small parts or deep nesting costs more than
    one pass over its bytes; it runs before the prediction lock is taken, so it holds no other request."""
    if not content_type.startswith("multipart/form-data"):
        return body, content_type
    header = Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not 0 < len(boundary) <= 70:  # RFC 2046's limit
        raise UploadError(400, "The form has no boundary: send the poster as a file field (curl -F file=@p.jpg).")
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    if body.count(delimiter) > MAX_FORM_PARTS + 1:
        raise UploadError(400, f"The form has more than {MAX_FORM_PARTS} parts: send the poster alone.")
    for part in body.split(delimiter)[1:-1]:  # before the first delimiter is the preamble, after the last the end
        head, _, payload = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = BytesHeaderParser(policy=HTTP).parsebytes(head[:MAX_PART_HEADER] + b"\r\n\r\n")
        if headers.get_filename() is not None:
            return payload.removesuffix(b"\r\n"), headers.get_content_type()
    raise UploadError(400, "The form holds no file: send the poster as a file field (curl -F file=@p.jpg).")


def answer(predictor: Predicts, body: bytes, content_type: str, genre: str | None,
           recall: str | None = None, title: str | None = None, fused: Fused | None = None) -> tuple[int, dict]:
    """(HTTP status, JSON answer) for one uploaded poster, its bytes and type as read_upload gives them. With
    `recall` (a level), the predicted set is that level's (evaluation/recall.py); with `title`, the model's title
    head (`fused`) answers with the poster (predict/titles.py)."""
    if content_type and not content_type.startswith(ACCEPTED_TYPES):
        return 415, {"error": f"Not an image file ({content_type}): upload a JPEG, PNG, WebP or GIF poster."}
    try:
        image = load_image(io.BytesIO(body), MAX_UPLOAD_PIXELS, name="the upload")
    except DataError as e:
        return 400, {"error": f"Not a readable image: {str(e).split(': ', 1)[-1]}."}
    if genre is not None and genre not in predictor.genres:
        return 400, {"error": f"Unknown genre {genre!r}."}
    if title and fused is None:
        return 400, {"error": "This model has no title head: send the poster alone."}
    rule = fused if title else predictor  # whose thresholds and recall levels choose the set
    if recall is not None and recall not in (rule.recall_thresholds or {}):
        return 400, {"error": f"This model has no recall level {recall[:20]!r}."}
    probabilities = predictor.predict_images([image])[0]
    if title:
        try:
            probabilities = fused.fuse(probabilities[None], [title])[0]
        except DataError as e:
            return 400, {"error": f"{e}."}
    sets = chosen_sets(probabilities[None], rule.thresholds, recall, rule.recall_thresholds)
    result = {"probabilities": {g: round(float(p), 4) for g, p in zip(predictor.genres, probabilities)},
              "predicted": genre_names(sets, predictor.genres)[0], "input": "poster and title" if title else "poster",
              "thresholds": {g: round(float(t), 4) for g, t in zip(predictor.genres, rule.thresholds)},
              "recall": recall and {"level": recall, "threshold": round(rule.recall_thresholds[recall], 4)},
              "heatmap": None, "heatmap_genre": None}
    if getattr(predictor, "network", None) is not None:  # heatmaps need a network's gradients (and PyTorch)
        from postergenre.explain.gradcam import grad_cam, overlay

        shown = genre or predictor.genres[int(probabilities.argmax())]
        cam, _ = grad_cam(predictor.network, predictor.transform(image), predictor.genres.index(shown))
        image.thumbnail((400, 400))
        png = io.BytesIO()
        overlay(image, cam).save(png, "PNG")
        result.update(heatmap=base64.b64encode(png.getvalue()).decode(), heatmap_genre=shown)
    return 200, result


class _Deadline(io.RawIOBase):
    """A connection's reads, each allowed only the time left before the request's deadline."""

    def __init__(self, connection: socket.socket, deadline: float):
        self.connection, self.deadline = connection, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.connection.settimeout(left)
        return self.connection.recv_into(buffer)


@dataclass
class Site:
    """What every request of one server reads: the model (and its title head), the page, the limits, and the lock
    that lets one prediction run at a time (the model and its Grad-CAM hooks are shared)."""
    predictor: Predicts
    fused: Fused | None
    page: bytes
    max_bytes: int
    timeout: float
    lock: threading.Lock = field(default_factory=threading.Lock)


class BoundedServer(ThreadingHTTPServer):
    """A thread per connection, up to `max_clients`; past that a 503 is written at once and the socket closed."""
    daemon_threads = True
    BUSY_BODY = json.dumps({"error": "Busy: try again in a moment."}).encode()
    BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(BUSY_BODY), BUSY_BODY))

    def __init__(self, address: tuple[str, int], site: Site, max_clients: int):
        super().__init__(address, PosterHandler)
        self.site, self.slots = site, threading.BoundedSemaphore(max_clients)

    def process_request(self, request: socket.socket, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            try:
                request.settimeout(1)
                request.sendall(self.BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: socket.socket, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class PosterHandler(BaseHTTPRequestHandler):
    """GET / is the page; POST /predict answers one poster (answer), within the site's limits."""
    server: BoundedServer

    def setup(self) -> None:
        super().setup()
        self.rfile = io.BufferedReader(_Deadline(self.connection, time.monotonic() + self.server.site.timeout))

    def do_GET(self) -> None:
        if urlsplit(self.path).path != "/":
            return self._send(404, b"not found", "text/plain")
        self._send(200, self.server.site.page, "text/html; charset=utf-8")

    def do_POST(self) -> None:
        site, url = self.server.site, urlsplit(self.path)
        if url.path != "/predict":
            return self._json(404, {"error": "not found"})
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            return self._json(411, {"error": "The upload has no Content-Length."})
        if not re.fullmatch(r"[0-9]{1,15}", length.strip()):
            self.close_connection = True
            return self._json(400, {"error": f"Content-Length {length[:20]!r} is not a size."})
        size = int(length)
        if size > site.max_bytes:  # refused unread; drained so that the browser gets to read the answer
            self.close_connection = True
            remaining = min(size, DRAIN_LIMIT)
            while remaining > 0 and (chunk := self.rfile.read(min(remaining, 1 << 16))):
                remaining -= len(chunk)
            return self._json(413, {"error": f"The file is {size / 1e6:.1f} MB; the limit is "
                                             f"{site.max_bytes / 1e6:.0f} MB."})
        body = self.rfile.read(size)
        query = parse_qs(url.query)
        genre, recall, title = (query.get(name, [None])[0] for name in ("genre", "recall", "title"))
        try:
            poster, content_type = read_upload(body, self.headers.get("Content-Type", ""))
        except UploadError as e:
            return self._json(e.status, {"error": str(e)})
        with site.lock:
            status, result = answer(site.predictor, poster, content_type, genre, recall, title, site.fused)
        self._json(status, result)

    def _json(self, status: int, result: dict) -> None:
        self._send(status, json.dumps(result).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        # the answer gets time of its own, whatever the request took
        self.connection.settimeout(self.server.site.timeout)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        print(f"{self.address_string()} {format % args}", file=sys.stderr)


def make_server(predictor: Predicts, port: int, max_bytes: int, timeout: float = 10.0,
                max_clients: int = 32, host: str = "127.0.0.1", fused: Fused | None = None) -> BoundedServer:
    """The page and /predict for `predictor`; with `fused` (its title head), a title field too."""
    hint = " Click a genre to see its heatmap." if getattr(predictor, "network", None) is not None else ""
    levels = "".join(f'<option value="{level}">recall {level}</option>' for level in predictor.recall_thresholds or {})
    page = (PAGE.read_text().replace("MODEL_NAME", html.escape(predictor.name)).replace("HEATMAP_HINT", hint)
            .replace("RECALL_OPTIONS", levels).replace("RECALL_HIDDEN", "" if levels else "hidden")
            .replace("TITLE_HIDDEN", "" if fused else "hidden")).encode()
    return BoundedServer((host, port), Site(predictor, fused, page, max_bytes, timeout), max_clients)
