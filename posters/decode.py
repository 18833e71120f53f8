"""Decode a poster file into an RGB image, one way for every model and the downloader (PIL only, no torch)."""
from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from posters.data import DataError

# Refuse decompression bombs: no real poster comes near this.
MAX_PIXELS = 40_000_000


class TooLarge(DataError):
    """An image whose header announces more pixels than allowed; it is refused before decoding."""


def load_image(path: Path | str | BinaryIO, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open a poster as RGB: EXIF orientation applied, alpha flattened on white, first frame only."""
    try:
        with Image.open(path) as img:  # reads the header only: the size is known before decoding
            if img.width * img.height > max_pixels:
                raise TooLarge(f"{path}: {img.width}x{img.height} pixels, over the {max_pixels:,} allowed")
            return _to_rgb(img)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot decode image ({e})") from None


def _to_rgb(img: Image.Image) -> Image.Image:
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
