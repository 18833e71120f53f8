"""A head predicted with ONNX Runtime, NumPy and PIL alone, so that one poster from the command line takes about
a second instead of fifteen.

Importing scikit-learn and skops (which imports torch, through scikit-learn's array-API layer) takes seconds;
the model itself, milliseconds. So a head that is a scaler and dense layers (the logistic head, the MLP) is also
saved as plain arrays (heads/arrays.py), `<model>.arrays.safetensors` beside its `.skops`, and its frozen
backbone runs from the ONNX graph that extraction already cached (core.workspace.cached_graph). `postergenre
predict --model` takes this path when both are there and nothing asks for PyTorch (`--engine torch`, reduced
precision); otherwise, and for ML-kNN or test-time augmentation, it loads the full model. PIL resizes the
pixels, as on the full path (posters.images.pixels_transform), and the probabilities differ from the full
model's by under LIGHT_TOLERANCE (tests/test_predict.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors import SafetensorError
from safetensors.numpy import load_file

from postergenre.core.errors import DataError
from postergenre.core.files import safetensors_header
from postergenre.core.runtime import INFERENCE_PRECISION
from postergenre.core.workspace import arrays_path, cached_graph, file_sha256
from postergenre.evaluation.recall import RECALL_LEVELS
from postergenre.posters.decode import load_image

LIGHT_TOLERANCE = 1e-5  # from the full model's probabilities; measured 1.3e-7 on 100 sample posters
MAX_ARRAYS_BYTES, MAX_HEADER_BYTES = 2**28, 2**20
ACTIVATIONS = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "identity": lambda z: z,
               "logistic": lambda z: np.exp(-np.logaddexp(0, -z))}  # the sigmoid, without overflow at SATURATED


class LightHead:
    """A head whose arrays file and backbone graph are there: predict_proba(PIL images) with ONNX Runtime."""

    def __init__(self, path: Path, meta: dict, tensors: dict[str, np.ndarray], graph: Path):
        import onnxruntime

        self.name, self.genres = path.stem, list(meta["genres"])
        self.thresholds = np.asarray(meta["thresholds"], dtype=np.float64)
        self.recall_thresholds: dict[str, float] | None = meta.get("recall_thresholds")
        self.batch_size, self.image_size = int(meta["batch_size"]), int(meta["fingerprint"]["image_size"])
        self.activations, self.tensors, self.graph = list(meta["activations"]), tensors, graph
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
        return self.predict_proba(images) if images else np.zeros((0, len(self.genres))), errors

    def predict_proba(self, images: list[Image.Image]) -> np.ndarray:
        rows = [self.embed(images[i:i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        z = (np.concatenate(rows).astype(np.float64) - self.tensors["mean"]) / self.tensors["scale"]
        for i, activation in enumerate(self.activations):
            z = ACTIVATIONS[activation](z @ self.tensors[f"weights{i}"] + self.tensors[f"bias{i}"])
        return z


def load_light(path: Path | str, engine: str = "auto", precision: str = INFERENCE_PRECISION) -> LightHead | None:
    """The head at `path` on the light path, or None where the full model must load: not a head with an arrays
    file, PyTorch or reduced precision asked for, test-time augmentation, or the backbone's graph not cached yet.
    Arrays that do not belong to the head file beside them (its checksum differs) are not used."""
    path = Path(path)
    arrays = arrays_path(path)
    if path.suffix != ".skops" or engine == "torch" or precision != INFERENCE_PRECISION or not arrays.is_file():
        return None
    try:
        meta, tensors = _read_arrays(arrays)
        if meta["head_sha256"] != file_sha256(path):
            return None
        fingerprint = meta["fingerprint"]
        if fingerprint.get("tta") != "none":
            return None
        graph = cached_graph(fingerprint["backbone"], int(fingerprint["image_size"]), fingerprint["weights_sha256"])
        return LightHead(path, meta, tensors, graph) if graph else None
    except (KeyError, TypeError, ValueError, OSError, SafetensorError):
        return None  # whatever is wrong with it, the full path reads the head file itself and says so


def _read_arrays(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The arrays file's settings and tensors, its size and header bounded before the tensors are read."""
    if path.stat().st_size > MAX_ARRAYS_BYTES:
        raise ValueError(f"{path}: larger than a head's arrays")
    meta = json.loads(safetensors_header(path, MAX_HEADER_BYTES)["__metadata__"]["postergenre"])
    tensors = load_file(str(path))
    layers = len(meta["activations"])
    if set(tensors) != {"mean", "scale", *(f"{kind}{i}" for i in range(layers) for kind in ("weights", "bias"))} \
            or any(a not in ACTIVATIONS for a in meta["activations"]):
        raise ValueError(f"{path}: not a head's arrays")
    width = len(tensors["mean"])  # each layer takes the width the one before gives, the last one gives the genres
    for i in range(layers):
        if tensors[f"weights{i}"].shape[0] != width or tensors[f"bias{i}"].shape != tensors[f"weights{i}"].shape[1:]:
            raise ValueError(f"{path}: layer {i} does not fit")
        width = tensors[f"weights{i}"].shape[1]
    if tensors["scale"].shape != tensors["mean"].shape or not width == len(meta["genres"]) == len(meta["thresholds"]):
        raise ValueError(f"{path}: not a head's arrays")
    # checked here, not by predict.settings' schema: importing that module imports torch, which this path avoids
    recall = meta.get("recall_thresholds") or {}
    if not (isinstance(recall, dict) and set(recall) <= set(RECALL_LEVELS)
            and all(isinstance(t, float) and 0 <= t <= 1 for t in recall.values())):
        raise ValueError(f"{path}: recall thresholds this version did not write")
    return meta, tensors


