"""The Python API: predict with a saved model, and run the pipeline's steps, without building a Namespace.

    model = postergenre.load("models/anime-posters-final.skops")
    model.genres, model.thresholds
    [poster.genres for poster in model.predict(["a.jpg", pil_image, uint8_array])]
    model.predict("a.jpg", titles="Cowboy Bebop")  # a final model's title head answers with the poster

    features = postergenre.features("my-posters", "efficientnet_lite0")  # features/my-posters-efficientnet_lite0.h5
    postergenre.fit_heads(features)                                      # models/, results/
    postergenre.final(features)                                          # models/my-posters-final.skops

Each step is the function its command calls, so the files are the same as `make split features heads final`
writes. Bad input raises postergenre.core.errors.DataError with the one line the command would print.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np
from PIL import Image

from postergenre.core import workspace
from postergenre.core.errors import DataError
from postergenre.core.runtime import INFERENCE_PRECISION
from postergenre.evaluation.recall import chosen_sets
from postergenre.evaluation.sets import genre_names
from postergenre.posters.decode import check_image, check_size, load_image, to_rgb
from postergenre.predict.arguments import Predicts, builtin_or, load_predictor
from postergenre.predict.titles import Fused, with_title_head

ImageLike = Union[str, Path, Image.Image, np.ndarray]


@dataclass(frozen=True)
class Prediction:
    """One poster's answer: the predicted genre set, by the model's own rule (every genre at or above its
    threshold, and the top genre always) or a recall level's, and every genre's probability."""
    genres: list[str]
    probabilities: dict[str, float]


class Model:
    """A saved model (head, network or ensemble), loaded by `load`."""

    def __init__(self, predictor: Predicts, path: Path | None = None):
        self.predictor, self.path = predictor, path
        self._fused: Fused | None = None  # its title head, read when a title is first given

    @property
    def name(self) -> str:
        return self.predictor.name

    @property
    def genres(self) -> list[str]:
        return list(self.predictor.genres)

    @property
    def thresholds(self) -> dict[str, float]:
        return dict(zip(self.predictor.genres, map(float, self.predictor.thresholds)))

    def predict_proba(self, images: ImageLike | Iterable[ImageLike]) -> np.ndarray:
        """Probabilities (images, genres), in the order of `genres`. Every image is checked first (a path's file
        and header, an array's type and size, a PIL image's size), so a bad one is named before any work."""
        images = _as_list(images)
        for i, image in enumerate(images):
            _check(image, f"image {i}")
        predictor, batches = self.predictor, []
        for start in range(0, len(images), predictor.batch_size):
            batch = [_rgb(image, f"image {i}") for i, image in enumerate(images[start:start + predictor.batch_size],
                                                                          start)]
            batches.append(predictor.predict_images(batch))
        return np.concatenate(batches) if batches else np.zeros((0, len(predictor.genres)), np.float32)

    def predict(self, images: ImageLike | Iterable[ImageLike], recall: str | float | None = None,
                titles: str | Sequence[str] | None = None) -> list[Prediction]:
        """One Prediction per image: a file path, a PIL image, or a uint8 array (height, width[, 3 or 4]); one image
        alone, or a list or any iterable of them. With `recall` (0.8, 0.9 or 0.95), a final head's sets that hold
        on average that share of a poster's true genres (evaluation/recall.py). With `titles` (one title, or one
        per image), a final model's title head answers with the posters (predict/titles.py)."""
        images = _as_list(images)
        titles = [titles] if isinstance(titles, str) else None if titles is None else list(titles)
        if titles is not None and len(titles) != len(images):
            raise DataError(f"{len(titles)} titles for {len(images)} images: give one title per image")
        predictor = self._title_head() if titles is not None else self.predictor
        probabilities = self.predict_proba(images)
        if titles is not None:
            probabilities = predictor.fuse(probabilities, titles)
        sets = chosen_sets(probabilities, predictor.thresholds, recall, predictor.recall_thresholds, predictor.name)
        return [Prediction(names, {g: float(p) for g, p in zip(predictor.genres, probs)})
                for names, probs in zip(genre_names(sets, predictor.genres), probabilities)]

    def _title_head(self) -> Fused:
        if self._fused is None:
            if self.path is None:
                raise DataError(f"{self.name}: loaded without its file, so its title head cannot be found")
            self._fused = with_title_head(self.predictor, self.path)
        return self._fused

    def __repr__(self) -> str:
        return f"postergenre.Model({self.name!r}, {len(self.genres)} genres)"


def load(path: Path | str = "anime", weights: str | None = None, precision: str = INFERENCE_PRECISION,
         engine: str = "auto", trust_timm: bool = False) -> Model:
    """The model saved at `path`: a head (.skops), a network (.safetensors) or an ensemble (.json); by default, or
    as "anime", the built-in anime genre model (postergenre.builtin). `weights`: a local state_dict for a head's
    backbone (resnet50 offline); `engine`: how a head's backbone runs (auto, torch, onnxruntime); `trust_timm`:
    allow a head on a timm backbone, whose code timm runs."""
    path = builtin_or(path)
    return Model(load_predictor(path, weights, precision, engine, trust_timm), path)


def _as_list(images: ImageLike | Iterable[ImageLike]) -> list[ImageLike]:
    """One image as a list of one (a path string is one image, not its characters); any iterable as a list."""
    if isinstance(images, (str, Path, Image.Image, np.ndarray)):
        return [images]
    try:
        return list(images)
    except TypeError:
        raise DataError(f"images must be a path, a PIL image, a uint8 array, or a list of them, not "
                        f"{type(images).__name__}") from None


def _check(image: object, name: str) -> None:
    """What _rgb would refuse, found without decoding (docs/bad-inputs.md)."""
    if isinstance(image, (str, Path)):
        check_image(image, name=f"{name} ({image})")
    elif isinstance(image, Image.Image):
        check_size(*image.size, name=name)
        try:
            image.load()  # its pixels are needed anyway; a closed image, or one whose file is gone, says so here
        except (ValueError, OSError) as e:
            raise DataError(f"{name}: an unusable PIL image ({e})") from None
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise DataError(f"{name}: an array image must be uint8 of shape (height, width[, 3 or 4]), not "
                            f"{image.dtype} {image.shape}")
        check_size(image.shape[1], image.shape[0], name=name)
    else:
        raise DataError(f"{name}: a path, a PIL image or a uint8 array, not {type(image).__name__}")


def _rgb(image: ImageLike, name: str) -> Image.Image:
    """A checked image (_check) as an RGB poster."""
    if isinstance(image, (str, Path)):
        return load_image(image, name=f"{name} ({image})")
    try:
        return to_rgb(image if isinstance(image, Image.Image) else Image.fromarray(image))
    except (ValueError, OSError) as e:  # a PIL image whose file went away, or that was closed meanwhile
        raise DataError(f"{name}: cannot read this image ({e})") from None


def split(data: Path | str, out: Path | str | None = None, seed: int = 0, min_count: int = 5,
          grouping: str = "franchise") -> Path:
    """`make split`: the data set's seeded train/validation/test split, by default features/<dataset>-split.json;
    `grouping` "franchise" keeps each franchise in one part (posters/franchises.py), "none" splits poster by
    poster."""
    from postergenre.posters.data import read_posters
    from postergenre.posters.split import make_split

    posters = read_posters(data)
    out = Path(out) if out else workspace.split_path("features", posters.name)
    make_split(posters, seed=seed, min_count=min_count, grouping=grouping).save(out)
    return out


def features(data: Path | str, backbone: str = "efficientnet_lite0", split_file: Path | str | None = None,
             out: Path | str | None = None, weights: str | None = None, **options: object) -> Path:
    """`make features`: every poster's embedding by the frozen `backbone`, by default into
    features/<dataset>-<backbone>.h5, on the split `split_file` (default: features/<dataset>-split.json, made if
    missing). `options` go to postergenre.extract.features.extract (batch_size, tta, precision, engine, workers)."""
    from postergenre.core.runspec import is_backbone_name
    from postergenre.extract.backbones import build_backbone
    from postergenre.extract.features import extract
    from postergenre.posters.data import read_posters
    from postergenre.posters.split import load_current

    if not is_backbone_name(backbone):
        raise DataError(f"unknown backbone {backbone!r}")
    posters = read_posters(data)
    split_file = Path(split_file) if split_file else workspace.split_path("features", posters.name)
    if not split_file.exists():
        split(data, split_file)
    out = Path(out) if out else workspace.features_path("features", posters.name, backbone)
    extract(posters, load_current(split_file, posters), build_backbone(backbone, weights), out, **options)
    return out


def fit_heads(features_file: Path | str, heads: Sequence[str] = ("logistic", "mlknn", "mlp"),
          models_dir: Path | str = "models", results_dir: Path | str = "results",
          cv: tuple[int, int] | None = None) -> dict[str, dict]:
    """`make heads`: fit, tune and score each head on a feature file; with `cv` (folds, repeats), cross-validate
    it too. Returns model name -> its result (validation and test figures)."""
    from postergenre.extract.features import load_features
    from postergenre.heads.train import run_heads

    return run_heads(load_features(features_file), list(heads), models_dir, results_dir, cv=cv)


def final(features_file: Path | str, results_dir: Path | str = "results", models_dir: Path | str = "models",
          folds: int = 5, seed: int = 0) -> Path:
    """`make final`: refit the head the evaluation chooses on every labelled poster; the saved model's path."""
    from postergenre.extract.features import load_features
    from postergenre.heads.final import fit_final

    return fit_final(load_features(features_file), results_dir, models_dir, folds, seed)
