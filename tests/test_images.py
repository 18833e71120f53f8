"""Unusual, broken and hostile poster files: each decodes to the right RGB picture or gives a one-line error,
and nothing but the allowed formats is ever opened."""
import io
import struct

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from postergenre.core.errors import DataError
from postergenre.posters.decode import FORMATS, MAX_PIXELS, load_image


def save(path, image, **options):
    """Through memory: Pillow's SPIDER writer registers the extension of a file name it saves to as SPIDER's,
    for the rest of the process (it would make every later .jpg a SPIDER candidate)."""
    buffer = io.BytesIO()
    image.save(buffer, **({"format": Image.registered_extensions()[path.suffix]} | options))
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize("name, make, size, pixel", [
    ("alpha.png", lambda p: save(p, Image.new("RGBA", (20, 30), (255, 0, 0, 0))), (20, 30), (255, 255, 255)),
    ("palette.png", lambda p: save(p, Image.new("P", (20, 30), 3)), (20, 30), (3, 0, 0)),
    ("gray.png", lambda p: save(p, Image.new("L", (20, 30), 128)), (20, 30), (128, 128, 128)),
    ("cmyk.jpg", lambda p: save(p, Image.new("CMYK", (20, 30), (0, 255, 0, 0))), (20, 30), (255, 0, 255)),
    ("sixteen.png", lambda p: save(p, Image.fromarray(np.full((30, 20), 40000, dtype=np.uint16))), (20, 30),
     (155, 155, 155)),
    ("plain.bmp", lambda p: save(p, Image.new("RGB", (20, 30), "blue")), (20, 30), (0, 0, 255)),
    ("lossy.webp", lambda p: save(p, Image.new("RGB", (20, 30), "red")), (20, 30), (254, 0, 0)),
    ("animated.gif", lambda p: save(p, Image.new("RGB", (20, 30), "red"), save_all=True,
                                    append_images=[Image.new("RGB", (20, 30), "blue")]), (20, 30), (255, 0, 0)),
    ("exif-rotated.jpg", lambda p: save(p, Image.new("RGB", (20, 30), "white"), exif=_rotated()), (30, 20),
     (255, 255, 255)),
])
def test_unusual_images_decode(tmp_path, name, make, size, pixel):
    image = load_image(make(tmp_path / name))
    assert image.mode == "RGB" and image.size == size
    assert image.getpixel((0, 0)) == pytest.approx(pixel, abs=3)


def _rotated() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    return exif


def _truncated_jpeg(path):
    buffer = io.BytesIO()
    Image.new("RGB", (200, 300), "red").save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[:300])


@pytest.mark.parametrize("name, make, message", [
    ("truncated.jpg", _truncated_jpeg, "cannot decode image"),
    ("empty.jpg", lambda p: p.write_bytes(b""), "not an image of an allowed format"),
    ("page.jpg", lambda p: p.write_text("<html>Not found</html>"), "not an image of an allowed format"),
    ("missing.jpg", lambda p: None, "image file not found"),
    ("bomb.png", lambda p: Image.new("1", (8000, 6000)).save(p), f"over the {MAX_PIXELS:,} allowed"),
])
def test_broken_images_give_one_line_errors(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(DataError, match=message) as error:
        load_image(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def _ico_hiding_a_large_png(path):
    """An ICO whose directory claims 16x16 while its entry is a 7000x7000 PNG: Pillow decodes it inside open()."""
    buffer = io.BytesIO()
    Image.new("1", (7000, 7000)).save(buffer, "PNG")
    png = buffer.getvalue()
    path.write_bytes(struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22) + png)


@pytest.mark.parametrize("name, make", [
    ("spider.jpg", lambda p: save(p, Image.new("F", (20, 30)), format="SPIDER")),
    ("im.jpg", lambda p: save(p, Image.new("RGB", (20, 30)), format="IM")),
    ("dds.png", lambda p: save(p, Image.new("RGBA", (20, 30)), format="DDS")),
    ("tiff.jpg", lambda p: save(p, Image.new("RGB", (20, 30)), format="TIFF")),
    ("icon.png", _ico_hiding_a_large_png),
])
def test_formats_outside_the_allow_list_are_refused_unopened(tmp_path, name, make):
    path = tmp_path / name
    make(path)
    with pytest.raises(DataError, match="not an image of an allowed format") as error:
        load_image(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_postscript_never_reaches_ghostscript(tmp_path, monkeypatch):
    """An EPS file named like a poster: a stand-in `gs` on PATH would record being run on it."""
    ran = tmp_path / "gs-ran"
    gs = tmp_path / "bin" / "gs"
    gs.parent.mkdir()
    gs.write_text(f"#!/bin/sh\necho \"$@\" >> {ran}\n")
    gs.chmod(0o755)
    monkeypatch.setenv("PATH", f"{gs.parent}:/usr/bin:/bin")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # not yet looked for: Pillow would look on PATH
    poster = tmp_path / "poster.jpg"
    Image.new("RGB", (20, 30), "red").save(poster, format="EPS")
    with pytest.raises(DataError, match="not an image of an allowed format"):
        load_image(poster)
    with pytest.raises(DataError, match="the upload: not an image"):  # an upload's message names no object
        load_image(io.BytesIO(poster.read_bytes()), name="the upload")
    assert not ran.exists()


def test_fuzzed_images_decode_or_give_one_line_errors():
    """Seeded byte mutations of every allowed format (and of formats that are refused): nothing escapes but
    DataError, and whatever decodes is an RGB image within the pixel cap."""
    rng = np.random.default_rng(0)
    seeds = []
    for fmt in FORMATS + ("TIFF", "ICO", "SPIDER"):
        buffer = io.BytesIO()
        image = Image.fromarray(rng.integers(0, 255, (24, 16, 3), dtype=np.uint8))
        image.convert("F" if fmt == "SPIDER" else "RGB").save(buffer, fmt)
        seeds.append(buffer.getvalue())
    decoded = refused = 0
    for i in range(10000):
        data = bytearray(seeds[i % len(seeds)])
        for _ in range(int(rng.integers(1, 6))):
            position = int(rng.integers(0, len(data)))
            data[position] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            data = data[:int(rng.integers(1, len(data)))]
        try:
            image = load_image(io.BytesIO(bytes(data)))
        except DataError as e:
            refused += 1
            assert "\n" not in str(e) and "object at 0x" not in str(e)
        else:
            decoded += 1
            assert image.mode == "RGB" and image.width * image.height <= MAX_PIXELS
    assert decoded > 100 and refused > 100  # the mutations exercised both ways
