"""Posters as tensors, one way for every model: the evaluation transform, augmentation presets, a Dataset."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from postergenre.core.errors import DataError
from postergenre.posters.decode import load_image


@dataclass
class ImageSpec:
    """What a model's input looks like."""
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def eval_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> Callable:
    """Squash the whole poster to a square: no crop, so titles and faces at the edges stay in view."""
    return v2.Compose([pixels_transform(image_size), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def pixels_transform(image_size: int) -> Callable:
    """The evaluation transform's pixels, left as uint8: a frozen backbone's Embedder scales and normalises
    a whole batch at once, which is cheaper than per poster and moves a quarter of the bytes between processes."""
    # Resized by PIL, before the tensor is made: predict/light.py resizes the same way without torch.
    return v2.Compose([v2.Resize((image_size, image_size), interpolation=v2.InterpolationMode.BILINEAR), v2.ToImage()])


# Training augmentation presets. Crops keep poster proportions (width/height 0.6-0.8) and are then
# squashed to a square like the evaluation transform, so train and test posters look alike.
AUGMENTATIONS = ("none", "light", "strong")


def train_transform(preset: str, image_size: int, mean: Sequence[float], std: Sequence[float]) -> Callable:
    if preset == "none":
        return eval_transform(image_size, mean, std)
    if preset not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {preset!r}; choose from {', '.join(AUGMENTATIONS)}")
    steps = [v2.ToImage(),
             v2.RandomResizedCrop((image_size, image_size), scale=(0.6, 1.0), ratio=(0.6, 0.8), antialias=True),
             v2.RandomHorizontalFlip()]
    if preset == "strong":
        steps.append(v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3))
    return v2.Compose(steps + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


class PosterImages(torch.utils.data.Dataset):
    """Images at `paths`, transformed; items are (tensor, row index), or (tensor, labels) given `labels`."""

    def __init__(self, paths: Sequence[Path], transform: Callable, labels: np.ndarray | None = None):
        self.paths = list(paths)
        self.transform = transform
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        image = self.transform(load_image(self.paths[i]))
        return image, (i if self.labels is None else self.labels[i])


class SkippingImages(PosterImages):
    """A poster that cannot be read becomes a blank image and its error: one bad file must not stop a run."""

    def __init__(self, paths: list[Path], transform, image_size: int):
        super().__init__(paths, transform)
        self.blank = transform(Image.new("RGB", (image_size, image_size)))  # the dtype the readable ones have

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        try:
            return super().__getitem__(i)[0], ""
        except DataError as e:
            return self.blank, str(e)
