"""A head's layers as plain arrays, `<model>.arrays.safetensors` beside its `.skops` (core.workspace.arrays_path):
what predict/light.py runs with NumPy alone.

The file holds a StandardScaler's mean and scale, then dense layers (weights0, bias0, ...) and their activations.
Everything else (genres, thresholds, the backbone) is the head's own settings, and the head records this file's
sha256 (settings.HeadSettings.arrays_sha256): arrays are used only where their head vouches for them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from postergenre.core.files import safetensors_header
from postergenre.core.workspace import file_sha256
from postergenre.modelfiles import SETTINGS_KEY, ModelFileError
from postergenre.modelfiles.settings import HeadSettings

ACTIVATIONS = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "identity": lambda z: z,
               "logistic": lambda z: np.exp(-np.logaddexp(0, -z))}  # the sigmoid, without overflow at a saturated logit
MAX_ARRAYS_BYTES, MAX_HEADER_BYTES = 2**28, 2**20

Layers = list[tuple[np.ndarray, np.ndarray]]


def write_arrays(path: Path | str, mean: np.ndarray, scale: np.ndarray, dense: Layers, activations: list[str]) -> str:
    """Write the arrays into `path` (the temporary file of the head's atomic write); returns their sha256, for the
    head's settings."""
    tensors = {"mean": mean, "scale": scale}
    for i, (weights, bias) in enumerate(dense):
        tensors[f"weights{i}"], tensors[f"bias{i}"] = weights, bias
    save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()}, str(path),
              metadata={SETTINGS_KEY: json.dumps({"activations": activations})})
    return file_sha256(path)


def read_arrays(path: Path, settings: HeadSettings) -> tuple[dict[str, np.ndarray], list[str]]:
    """(tensors, activations) of the arrays file its head's `settings` vouch for; anything else, a layer that does
    not fit the next or the genres, or a weight that is not finite is refused in one line."""
    if settings.arrays_sha256 is None:
        raise ModelFileError(f"{path}: its head does not vouch for arrays (saved before heads did)")
    if path.stat().st_size > MAX_ARRAYS_BYTES:
        raise ModelFileError(f"{path}: larger than a head's arrays")
    if file_sha256(path) != settings.arrays_sha256:
        raise ModelFileError(f"{path}: not the arrays its head was saved with")
    activations = json.loads(safetensors_header(path, MAX_HEADER_BYTES)["__metadata__"][SETTINGS_KEY])["activations"]
    tensors = load_file(str(path))
    layers = len(activations)
    if set(tensors) != {"mean", "scale", *(f"{kind}{i}" for i in range(layers) for kind in ("weights", "bias"))} \
            or any(a not in ACTIVATIONS for a in activations):
        raise ModelFileError(f"{path}: not a head's arrays")
    width = len(tensors["mean"])  # each layer takes the width the one before gives, the last one gives the genres
    for i in range(layers):
        if tensors[f"weights{i}"].shape[0] != width or tensors[f"bias{i}"].shape != tensors[f"weights{i}"].shape[1:]:
            raise ModelFileError(f"{path}: layer {i} does not fit")
        width = tensors[f"weights{i}"].shape[1]
    if tensors["scale"].shape != tensors["mean"].shape or width != len(settings.genres):
        raise ModelFileError(f"{path}: not a head's arrays for its {len(settings.genres)} genres")
    if not all(np.isfinite(t).all() for t in tensors.values()) or not (tensors["scale"] > 0).all():
        raise ModelFileError(f"{path}: weights that are not finite")
    return tensors, activations
