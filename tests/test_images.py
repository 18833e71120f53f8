"""Unusual and broken poster files: each decodes to the right RGB picture or gives a one-line error."""
import io

import numpy as np
import pytest
from PIL import Image

from posters.data import DataError
from posters.decode import MAX_PIXELS, load_image


def save(path, image, **options):
    image.save(path, **options)
    return path


@pytest.mark.parametrize("name, make, size, pixel", [
    ("alpha.png", lambda p: save(p, Image.new("RGBA", (20, 30), (255, 0, 0, 0))), (20, 30), (255, 255, 255)),
    ("palette.png", lambda p: save(p, Image.new("P", (20, 30), 3)), (20, 30), (3, 0, 0)),
    ("gray.png", lambda p: save(p, Image.new("L", (20, 30), 128)), (20, 30), (128, 128, 128)),
    ("cmyk.jpg", lambda p: save(p, Image.new("CMYK", (20, 30), (0, 255, 0, 0))), (20, 30), (255, 0, 255)),
    ("sixteen.png", lambda p: save(p, Image.fromarray(np.full((30, 20), 40000, dtype=np.uint16))), (20, 30),
     (155, 155, 155)),
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
    ("empty.jpg", lambda p: p.write_bytes(b""), "cannot decode image"),
    ("page.jpg", lambda p: p.write_text("<html>Not found</html>"), "cannot decode image"),
    ("missing.jpg", lambda p: None, "image file not found"),
    ("bomb.png", lambda p: Image.new("1", (8000, 6000)).save(p), f"over the {MAX_PIXELS:,} allowed"),
])
def test_broken_images_give_one_line_errors(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(DataError, match=message) as error:
        load_image(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)
