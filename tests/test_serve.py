"""make serve in a real browser: headless Chromium (Debian's package) driven by Playwright."""
import io
import json
import os
import select
import socket
import statistics
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image
from torch.utils.data import default_collate

from postergenre.posters.decode import load_image
from postergenre.predict.models import load_model
from postergenre.serve.server import UploadError, answer, make_server, read_upload
from postergenre.testing.browser import CHROMIUM, page_latencies, start_server
from tests.conftest import ROOT, run_module


@pytest.fixture
def server(trained):
    model = next((trained / "models").glob("*.safetensors"))
    process, url = start_server(model, max_mb=1)
    yield url, model
    process.terminate()
    process.wait()


def raw_request(url: str, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send a hand-written request (headers a browser would never send); return the status and body."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def send_unread(url: str, head: str, body_mb: int) -> None:
    """Headers, then a body the server must not read: it answers and hangs up, so our sending may fail."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n")
        try:
            for _ in range(body_mb):
                sock.sendall(b"\xff" * 1_000_000)
        except OSError:
            pass


def resident_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024


def slow_client_seconds(url: str, every: float, lines: int) -> float:
    """A client that sends a header line every `every` seconds, never finishing: seconds until the server hung up
    (or all `lines` were sent)."""
    address = urlsplit(url)
    start = time.monotonic()
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        for i in range(lines):
            time.sleep(every)
            if select.select([sock], [], [], 0)[0] and not sock.recv(1):
                break
            try:
                sock.sendall(f"X-Slow-{i}: {'a' * 20}\r\n".encode())
            except OSError:
                break
    return time.monotonic() - start


def good_request_seconds(url: str, poster: bytes) -> float:
    start = time.perf_counter()
    request = urllib.request.Request(url + "predict", data=poster, method="POST",
                                     headers={"Content-Type": "image/jpeg"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200 and json.loads(response.read())["predicted"]
    return time.perf_counter() - start


def test_abusive_requests_leave_the_server_answering(trained, sample_dir):
    model = next((trained / "models").glob("*.safetensors"))
    process, url = start_server(model, 1, "--timeout", "2", "--max-clients", "4")
    try:
        poster = sorted((sample_dir / "images").iterdir())[0].read_bytes()
        usual = min(good_request_seconds(url, poster) for _ in range(3))
        before = resident_mb(process.pid)

        post = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg"
        assert raw_request(url, post + "\r\nContent-Length: -1")[0] == 400
        send_unread(url, post + "\r\nContent-Length: -1", 200)
        status, body = raw_request(url, post + "\r\nContent-Length: abc", b"\xff" * 100)
        assert status == 400 and json.loads(body)["error"] == "Content-Length 'abc' is not a size."
        assert raw_request(url, post)[0] == 411
        bomb = io.BytesIO()
        Image.new("RGB", (6300, 6300), (200, 30, 30)).save(bomb, "PNG")  # 119 MB decoded, a small file
        status, body = raw_request(url, post + f"\r\nContent-Length: {len(bomb.getvalue())}", bomb.getvalue())
        assert status == 400 and "6300x6300 pixels, over the 16,000,000 allowed" in json.loads(body)["error"]
        assert resident_mb(process.pid) - before < 100  # nothing of those bodies was kept

        address = urlsplit(url)
        idle = [socket.create_connection((address.hostname, address.port), timeout=5) for _ in range(12)]
        time.sleep(0.5)
        refused = []
        for sock in idle[4:]:  # past the 4 that hold the slots: a 503 at once, no thread
            refused.append(sock.recv(200).split(b"\r\n")[0])
        assert refused == [b"HTTP/1.0 503 Service Unavailable"] * 8
        time.sleep(2.5)  # the silent ones are disconnected after --timeout
        assert [sock.recv(200) for sock in idle[:4]] == [b""] * 4
        for sock in idle:
            sock.close()
        assert good_request_seconds(url, poster) < 3 * usual + 0.5

        # 3 clients each sending a header line every 0.4 s: cut off at the 2 s deadline, however often they
        # send, and the slot left answers good requests meanwhile
        with ThreadPoolExecutor(3) as pool:
            slow = [pool.submit(slow_client_seconds, url, 0.4, 15) for _ in range(3)]
            time.sleep(0.5)
            assert good_request_seconds(url, poster) < 3 * usual + 0.5
            assert all(1.9 < s.result() < 3.0 for s in slow), [s.result() for s in slow]
    finally:
        process.terminate()
        process.wait()


def test_a_form_upload_answers_with_the_thresholds_and_a_busy_port_is_one_line(trained, sample_dir):
    """`curl -F file=@poster.jpg` works as the page's raw upload does, the answer says each genre's threshold,
    and a port already in use stops serve at once, before the model loads."""
    model = next((trained / "models").glob("*.safetensors"))
    predictor = load_model(model)
    poster = sorted((sample_dir / "images").iterdir())[0].read_bytes()
    boundary = "----postergenre"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + poster + f"\r\n--{boundary}--\r\n".encode()
    upload = read_upload(form, f"multipart/form-data; boundary={boundary}")
    assert upload == (poster, "image/jpeg")
    status, posted = answer(predictor, *upload, None)
    assert status == 200 and posted == answer(predictor, poster, "image/jpeg", None)[1]
    assert posted["thresholds"] == {g: round(float(t), 4) for g, t in zip(predictor.genres, predictor.thresholds)}
    empty = f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--{boundary}--\r\n"
    with pytest.raises(UploadError, match="The form holds no file") as refused:
        read_upload(empty.encode(), f"multipart/form-data; boundary={boundary}")
    assert refused.value.status == 400

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = run_module("serve", "--model", str(model), "--port", str(port), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"error: cannot listen on 127.0.0.1:{port} (")
    assert result.stderr.strip().endswith("pass another --port") and "model:" not in result.stderr


def test_upload_limits(server, tmp_path):
    url, _ = server  # its uploads are limited to 1 MB: some 20,000 parts
    request = urllib.request.Request(url + "predict", data=b"\xff" * 1_500_000, method="POST",
                                     headers={"Content-Type": "image/jpeg"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    assert json.loads(refused.value.read())["error"] == "The file is 1.5 MB; the limit is 1 MB."


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM and not os.environ.get("CI"), reason="no chromium (apt install chromium)")
def test_page_in_a_real_browser(server, sample_dir, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, model = server
    poster = sorted((sample_dir / "images").iterdir())[0]
    predictor = load_model(model)
    status, expected = answer(predictor, poster.read_bytes(), "image/jpeg", None)
    assert status == 200
    (tmp_path / "notes.txt").write_text("not a poster")
    (tmp_path / "broken.jpg").write_bytes(poster.read_bytes()[:300])

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.goto(url)
        page.set_input_files("#file", str(poster))
        expect(page.locator("#result")).to_be_visible(timeout=30_000)
        assert page.locator("#chosen").inner_text() == ", ".join(expected["predicted"])
        names = page.locator(".bar .name").all_inner_texts()
        assert sorted(names) == sorted(predictor.genres)
        shown = [f"{expected['probabilities'][n]:.2f}" for n in names]
        assert page.locator(".bar span:last-child").all_inner_texts() == shown
        assert page.locator("#caption").inner_text() == f"Heatmap: {expected['heatmap_genre']}"
        assert "Click a genre to see its heatmap." in page.locator("#meta").inner_text()  # a network has them
        assert page.locator("#rule").inner_text().startswith("A genre is predicted when its probability reaches")

        other = next(n for n in names if n != expected["heatmap_genre"])
        page.locator(".bar", has_text=other).click()
        expect(page.locator("#caption")).to_have_text(f"Heatmap: {other}")
        assert page.locator("#heatmap").evaluate("img => img.naturalWidth") > 0
        (ROOT / "reports").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "reports" / "serve-screenshot.png"), full_page=True)

        latencies = page_latencies(page, poster, 7)
        (ROOT / "reports" / "serve-latency.json").write_text(json.dumps(
            {"model": predictor.name, "median_ms": statistics.median(latencies), "ms": latencies}))

        page.set_input_files("#file", str(tmp_path / "notes.txt"))
        expect(page.locator("#error")).to_have_text(
            "Not an image file (text/plain): upload a JPEG, PNG, WebP or GIF poster.")
        expect(page.locator("#result")).to_be_hidden()
        page.set_input_files("#file", str(tmp_path / "broken.jpg"))
        expect(page.locator("#error")).to_contain_text("Not a readable image: cannot decode image")
        browser.close()
    assert load_image(ROOT / "reports" / "serve-screenshot.png").size[0] >= 1000


def test_the_page_offers_a_final_heads_recall_levels(sample_heads, trained, sample_dir):
    """`?recall=0.9` answers that level's set; a level the model lacks, or a network without recall thresholds, is
    a 400; the page's choice shows only for a model that has them."""
    head, network = next((sample_heads / "models").glob("*-final.skops")), load_model(next(
        (trained / "models").glob("*.safetensors")))
    predictor, poster = load_model(head), sorted((sample_dir / "images").iterdir())[0].read_bytes()
    status, posted = answer(predictor, poster, "image/jpeg", None, "0.9")
    threshold = predictor.recall_thresholds["0.9"]
    assert status == 200 and posted["recall"] == {"level": "0.9", "threshold": round(threshold, 4)}
    raw = predictor.predict_proba(default_collate([predictor.transform(load_image(io.BytesIO(poster)))]))[0]
    assert posted["predicted"] == [g for g, p in zip(predictor.genres, raw) if p > threshold]
    refused = (400, {"error": "This model has no recall level '0.7'."})
    assert answer(predictor, poster, "image/jpeg", None, "0.7") == refused
    assert answer(network, poster, "image/jpeg", None, "0.9")[0] == 400
    assert answer(predictor, poster, "image/jpeg", None)[1]["recall"] is None
    assert 'id="choice" hidden' in _page(network) and 'id="choice" >' in _page(predictor)
    assert '<option value="0.95">recall 0.95</option>' in _page(predictor)


def _page(predictor) -> str:
    server = make_server(predictor, 0, 1_000_000)
    try:
        address = server.server_address
        threading.Thread(target=server.handle_request, daemon=True).start()
        with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/", timeout=30) as response:
            return response.read().decode()
    finally:
        server.server_close()


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM and not os.environ.get("CI"), reason="no chromium (apt install chromium)")
def test_the_recall_choice_in_a_real_browser(sample_heads, sample_dir):
    from playwright.sync_api import expect, sync_playwright

    model = next((sample_heads / "models").glob("*-final.skops"))
    poster = sorted((sample_dir / "images").iterdir())[0]
    expected = answer(load_model(model), poster.read_bytes(), "image/jpeg", None, "0.95")[1]
    process, url = start_server(model)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page()
            page.goto(url)
            page.set_input_files("#file", str(poster))
            expect(page.locator("#rule")).to_contain_text("the top genre always is", timeout=30_000)
            page.select_option("#recall", "0.95")
            expect(page.locator("#rule")).to_contain_text("at least 0.95 of a poster's true genres", timeout=30_000)
            assert page.locator("#chosen").inner_text() == ", ".join(expected["predicted"])
            browser.close()
    finally:
        process.terminate()
        process.wait()


def test_a_form_of_many_parts_or_deep_nesting_is_refused_in_one_pass(server):
    """A 10 MB form of 200,000 small parts, or one nested 3,000 deep, is refused with one line, from a count of its
    delimiters and a flat split, before the prediction lock: the email parser took 0.4 ms a part under the lock,
    and recursed once per level of nesting."""
    many = b"".join(b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\ny\r\n' for _ in range(200_000))
    with pytest.raises(UploadError, match=r"more than 8 parts"):
        read_upload(many + b"--b--\r\n", "multipart/form-data; boundary=b")
    nested = b"".join(f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n".encode()
                      for i in range(3000))
    with pytest.raises(UploadError, match="The form holds no file"):
        read_upload(nested, "multipart/form-data; boundary=b0")
    with pytest.raises(UploadError, match="no boundary"):
        read_upload(b"x", "multipart/form-data")
    url, _ = server  # its uploads are limited to 1 MB: some 20,000 parts
    request = urllib.request.Request(url + "predict", data=many[:900_000] + b"--b--\r\n", method="POST",
                                     headers={"Content-Type": "multipart/form-data; boundary=b"})
    with pytest.raises(urllib.error.HTTPError) as answered:
        urllib.request.urlopen(request, timeout=60)
    assert answered.value.code == 400 and "more than 8 parts" in json.loads(answered.value.read())["error"]
