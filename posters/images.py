"""Decode posters into RGB images and tensors, one way for every model."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image, ImageOps
from torchvision.transforms import v2

from posters.data import DataError

# Refuse decompression bombs: no real poster comes near 40 megapixels.
Image.MAX_IMAGE_PIXELS = 40_000_000


def load_image(path: Path | str) -> Image.Image:
    """Open a poster as RGB: EXIF orientation applied, alpha flattened on white, first frame only."""
    try:
        with Image.open(path) as img:
            img.seek(0)
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img)
            return img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot decode image ({e})") from None


def eval_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> Callable:
    """Squash the whole poster to a square: no crop, so titles and faces at the edges stay in view."""
    return v2.Compose([
        v2.ToImage(),
        v2.Resize((image_size, image_size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])


class PosterImages(torch.utils.data.Dataset):
    """Images at `paths`, transformed; items are (tensor, row index)."""

    def __init__(self, paths: Sequence[Path], transform: Callable):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(load_image(self.paths[i])), i
