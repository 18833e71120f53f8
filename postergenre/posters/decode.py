"""The one gate every poster file passes: the page, the downloader, extraction, prediction and the report decode
images here alone (PIL only, no torch).

Only FORMATS are opened: Pillow otherwise tries every plugin it has, and some hand the file to another program
(EPS to Ghostscript) or decode inside `Image.open` (an ICO's embedded PNG), before any size check. The size comes
from the header and is checked before a pixel is decoded. Whatever decoding raises is one skipped-poster reason.
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
from PIL import Image, ImageOps

from postergenre.core.errors import DataError
from postergenre.core.files import open_regular

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")  # docs/bad-inputs.md: what a poster is allowed to be
# Refuse decompression bombs: no real poster comes near this.
MAX_PIXELS = 40_000_000


class TooLarge(DataError):
    """An image whose header announces more pixels than allowed; it is refused before decoding."""


def read_image(source: Path | str | BinaryIO, max_pixels: int = MAX_PIXELS,
               name: str | None = None) -> tuple[Image.Image, str]:
    """A poster as RGB (EXIF orientation applied, alpha flattened on white, first frame only) and its format.

    `name` is how messages call the image (default: its path; an in-memory file is "the image").
    """
    with _opened(source, max_pixels, name) as img:
        return to_rgb(img), img.format


def check_image(source: Path | str | BinaryIO, max_pixels: int = MAX_PIXELS, name: str | None = None) -> None:
    """What read_image would refuse from the file and its header alone (missing, not a regular file, not an allowed
    format, no pixels or too many), without decoding a pixel: to say which of many images is bad before any work."""
    with _opened(source, max_pixels, name):
        pass


@contextmanager
def _opened(source: Path | str | BinaryIO, max_pixels: int, name: str | None) -> Iterator[Image.Image]:
    """The image with its header read and its size checked; whatever opening it or the block raises is one
    DataError naming it."""
    name = name or (str(source) if isinstance(source, (str, Path)) else "the image")
    try:
        with ExitStack() as files:
            if isinstance(source, (str, Path)):  # a FIFO would block the read forever, a device never end it
                if not Path(source).exists():
                    raise DataError(f"{name}: image file not found")
                source = files.enter_context(open_regular(source, name))
            img = files.enter_context(Image.open(source, formats=FORMATS))  # the header only: the size comes first
            check_size(img.width, img.height, max_pixels, name)
            yield img
    except Image.UnidentifiedImageError:
        raise DataError(f"{name}: not an image of an allowed format ({', '.join(FORMATS)})") from None
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - a hostile file can make any plugin raise anything; none may escape
        raise DataError(f"{name}: cannot decode image ({type(e).__name__}: {str(e)[:200]})") from None


def check_size(width: int, height: int, max_pixels: int = MAX_PIXELS, name: str = "the image") -> None:
    """Refuse an image of no pixels, or of more than `max_pixels`, from its size alone: before decoding a file, or
    before converting an array or a PIL image."""
    if width * height == 0:
        raise DataError(f"{name}: {width}x{height} pixels, an image of none")
    if width * height > max_pixels:
        raise TooLarge(f"{name}: {width}x{height} pixels, over the {max_pixels:,} allowed")


def load_image(source: Path | str | BinaryIO, max_pixels: int = MAX_PIXELS, name: str | None = None) -> Image.Image:
    """read_image's RGB poster alone."""
    return read_image(source, max_pixels, name)[0]


def to_rgb(img: Image.Image) -> Image.Image:
    """An opened image as an RGB poster: EXIF orientation applied, 16-bit grey scaled, alpha flattened on white,
    first frame only."""
    img.seek(0)
    img = ImageOps.exif_transpose(img)
    if img.mode.startswith("I"):  # 16-bit greyscale: scale to 8 bits (PIL's convert would clip)
        pixels = np.asarray(img, dtype=np.float64)
        top = 65535 if pixels.max() <= 65535 else 2**32 - 1
        img = Image.fromarray((pixels * (255 / top)).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")
