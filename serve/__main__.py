"""python -m serve --model FILE [--port 8000]: a local page where anyone can try a poster.

The page (serve/page.html) posts the raw bytes of the chosen poster to /predict and shows the
genre probabilities, the predicted set and a Grad-CAM heatmap. The model is loaded once at start.
No web framework: one page and one endpoint fit the standard library's ThreadingHTTPServer, so
serving adds no dependency.
"""
import argparse
import base64
import html
import io
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from evaluation.metrics import predict_sets
from explain.gradcam import grad_cam, overlay
from extract.backbones import BackboneError
from posters.data import DataError
from posters.decode import load_image
from predict.models import Predictor, load_model

PAGE = Path(__file__).with_name("page.html")
DRAIN_LIMIT = 100_000_000  # larger uploads are cut off unread
ACCEPTED_TYPES = ("image/", "application/octet-stream")  # browsers send "" or octet-stream for unknown types


def answer(predictor: Predictor, body: bytes, content_type: str, genre: str | None) -> tuple[int, dict]:
    """(HTTP status, JSON answer) for one uploaded poster."""
    if content_type and not content_type.startswith(ACCEPTED_TYPES):
        return 415, {"error": f"Not an image file ({content_type}): upload a JPEG, PNG, WebP or GIF poster."}
    try:
        image = load_image(io.BytesIO(body))
    except DataError as e:
        return 400, {"error": f"Not a readable image: {str(e).split(': ', 1)[-1]}."}
    if genre is not None and genre not in predictor.genres:
        return 400, {"error": f"Unknown genre {genre!r}."}
    x = predictor.transform(image)
    probabilities = predictor.predict_proba(x[None])[0]
    chosen = predict_sets(probabilities[None], predictor.thresholds)[0]
    result = {"probabilities": {g: round(float(p), 4) for g, p in zip(predictor.genres, probabilities)},
              "predicted": [g for g, on in zip(predictor.genres, chosen) if on], "heatmap": None,
              "heatmap_genre": None}
    if predictor.head is None:  # heatmaps need the network's gradients
        shown = genre or predictor.genres[int(probabilities.argmax())]
        cam, _ = grad_cam(predictor.network, x, predictor.genres.index(shown))
        image.thumbnail((400, 400))
        png = io.BytesIO()
        overlay(image, cam).save(png, "PNG")
        result.update(heatmap=base64.b64encode(png.getvalue()).decode(), heatmap_genre=shown)
    return 200, result


def make_server(predictor: Predictor, port: int, max_bytes: int) -> ThreadingHTTPServer:
    page = PAGE.read_text().replace("MODEL_NAME", html.escape(predictor.name)).encode()
    lock = threading.Lock()  # one prediction at a time: the model and its Grad-CAM hooks are shared

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if urlsplit(self.path).path != "/":
                return self._send(404, b"not found", "text/plain")
            self._send(200, page, "text/html; charset=utf-8")

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/predict":
                return self._json(404, {"error": "not found"})
            size = int(self.headers.get("Content-Length") or 0)
            if size > max_bytes:  # refused unread; drained so that the browser gets to read the answer
                self.close_connection = True
                remaining = min(size, DRAIN_LIMIT)
                while remaining > 0 and (chunk := self.rfile.read(min(remaining, 1 << 16))):
                    remaining -= len(chunk)
                return self._json(413, {"error": f"The file is {size / 1e6:.1f} MB; the limit is "
                                                 f"{max_bytes / 1e6:.0f} MB."})
            body = self.rfile.read(size)
            genre = parse_qs(url.query).get("genre", [None])[0]
            with lock:
                status, result = answer(predictor, body, self.headers.get("Content-Type", ""), genre)
            self._json(status, result)

        def _json(self, status: int, result: dict) -> None:
            self._send(status, json.dumps(result).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            print(f"{self.address_string()} {format % args}", file=sys.stderr)

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m serve", description=__doc__)
    parser.add_argument("--model", required=True, help="a saved model: models/*.pt (with heatmaps) or *.joblib")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-mb", type=float, default=10.0, help="largest upload accepted")
    parser.add_argument("--weights", default=None, help="local state_dict of a head's backbone (resnet50 offline)")
    args = parser.parse_args()
    try:
        predictor = load_model(args.model, args.weights)
    except (DataError, BackboneError) as e:
        sys.exit(f"error: {e}")
    server = make_server(predictor, args.port, int(args.max_mb * 1e6))
    print(f"serving {predictor.name} on http://127.0.0.1:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
