"""A head predicted with ONNX Runtime, NumPy and PIL alone, so that one poster from the command line takes about
a second instead of fifteen.

Importing scikit-learn and skops (which imports torch, through scikit-learn's array-API layer) takes seconds;
the model itself, milliseconds. So a head that is a scaler and dense layers (the logistic head, the MLP) is also
saved as plain arrays (modelfiles/arrays.py), `<model>.arrays.safetensors` beside its `.skops`, vouched for by
the head's settings, which this path reads and checks with the full path's schema (modelfiles/settings.py); its
frozen backbone runs from the ONNX graph that extraction already cached (core.workspace.cached_graph). `postergenre
predict --model` takes this path when both are there and nothing asks for PyTorch (`--engine torch`, reduced
precision); otherwise, and for ML-kNN or test-time augmentation, it loads the full model. PIL resizes the
pixels, as on the full path (posters.images.pixels_transform), and the probabilities differ from the full
model's by under LIGHT_TOLERANCE (tests/test_predict.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from safetensors import SafetensorError

from postergenre.core.errors import DataError
from postergenre.core.runtime import INFERENCE_PRECISION
from postergenre.core.workspace import arrays_path, cached_graph
from postergenre.modelfiles.arrays import ACTIVATIONS, read_arrays
from postergenre.modelfiles.settings import HeadSettings, head_settings
from postergenre.posters.decode import load_image

LIGHT_TOLERANCE = 1e-5  # from the full model's probabilities (tests/test_predict.py)


class LightHead:
    """A head whose arrays file and backbone graph are there: predict_images(PIL images) with ONNX Runtime
    (predict.arguments.Predicts)."""

    def __init__(self, path: Path, settings: HeadSettings, tensors: dict[str, np.ndarray], activations: list[str],
                 graph: Path):
        import onnxruntime

        self.name, self.genres = path.stem, list(settings.genres)
        self.thresholds = np.asarray(settings.thresholds, dtype=np.float64)
        self.recall_thresholds: dict[str, float] | None = settings.recall_thresholds
        self.final: dict | None = settings.final
        self.batch_size, self.image_size = settings.batch_size, settings.fingerprint.image_size
        self.activations, self.tensors, self.graph = activations, tensors, graph
        self.session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        size = (self.image_size, self.image_size)
        pixels = np.stack([np.asarray(img.resize(size, Image.BILINEAR)).transpose(2, 0, 1) for img in images])
        return self.session.run(None, {"images": pixels})[0]

    def predict_files(self, paths: list[Path]) -> tuple[np.ndarray, dict[int, str]]:
        """Probabilities (posters, genres) for the readable posters, and {index: reason} for the others, as
        predict.models.predict_files gives them."""
        images, errors = [], {}
        for i, path in enumerate(paths):
            try:
                images.append(load_image(path))
            except DataError as e:
                errors[i] = str(e)
        return self.predict_images(images) if images else np.zeros((0, len(self.genres))), errors

    def predict_images(self, images: list[Image.Image]) -> np.ndarray:
        rows = [self.embed(images[i:i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        z = (np.concatenate(rows).astype(np.float64) - self.tensors["mean"]) / self.tensors["scale"]
        for i, activation in enumerate(self.activations):
            z = ACTIVATIONS[activation](z @ self.tensors[f"weights{i}"] + self.tensors[f"bias{i}"])
        return z


def load_light(path: Path | str, engine: str = "auto", precision: str = INFERENCE_PRECISION) -> LightHead | None:
    """The head at `path` on the light path, or None where the full model must load: not a head with an arrays
    file its settings vouch for, PyTorch or reduced precision asked for, test-time augmentation, or the
    backbone's graph not cached yet. A head or arrays file that does not check out also gives None: the full path
    reads the head file itself and says what is wrong with it."""
    path = Path(path)
    arrays = arrays_path(path)
    if path.suffix != ".skops" or engine == "torch" or precision != INFERENCE_PRECISION or not arrays.is_file():
        return None
    try:
        settings = head_settings(path)
        tensors, activations = read_arrays(arrays, settings)
    except (DataError, KeyError, TypeError, ValueError, OSError, SafetensorError):
        return None
    fingerprint = settings.fingerprint
    if fingerprint.tta != "none":
        return None
    graph = cached_graph(fingerprint.backbone, fingerprint.image_size, fingerprint.weights_sha256)
    return LightHead(path, settings, tensors, activations, graph) if graph else None
