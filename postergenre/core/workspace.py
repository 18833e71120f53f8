"""Where files go: the one place that names them (the Makefile follows the same pattern).

    features/<dataset>-split.json          a data set's seeded train/validation/test split
    features/<dataset>-<backbone>.h5       its embeddings by one backbone (timm:x is written timm-x)
    <cache>/<backbone>-<size>px-uint8-<weights sha256>.onnx    a frozen backbone exported for ONNX Runtime,
                                                               with its checksum in .onnx.sha256 beside it
    models/<model>.arrays.safetensors      a head's weights as plain arrays, beside its .skops
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def file_name(backbone: str) -> str:
    """The backbone's name as it appears in file and model names (timm:x -> timm-x)."""
    return backbone.replace(":", "-")


def split_path(features_dir: Path | str, dataset: str) -> Path:
    return Path(features_dir) / f"{dataset}-split.json"


def features_path(features_dir: Path | str, dataset: str, backbone: str) -> Path:
    return Path(features_dir) / f"{dataset}-{file_name(backbone)}.h5"


def arrays_path(head: Path | str) -> Path:
    return Path(head).with_suffix(".arrays.safetensors")


def cache_dir() -> Path:
    """Where exported ONNX graphs are kept: $POSTERGENRE_CACHE, else ~/.cache/postergenre."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "postergenre"
    return Path(os.environ.get("POSTERGENRE_CACHE", default))


def onnx_graph_path(backbone: str, image_size: int, weights_sha256: str) -> Path:
    return cache_dir() / f"{file_name(backbone)}-{image_size}px-uint8-{weights_sha256}.onnx"


def graph_checksum_path(graph: Path) -> Path:
    """Where an exported graph's sha256 is kept, written at its export."""
    return graph.with_name(graph.name + ".sha256")


def cached_graph(backbone: str, image_size: int, weights_sha256: str) -> Path | None:
    """The backbone's exported graph, if it is cached and unchanged since its export (its checksum matches)."""
    path = onnx_graph_path(backbone, image_size, weights_sha256)
    checksum = graph_checksum_path(path)
    if path.is_file() and checksum.is_file() and checksum.read_text().strip() == file_sha256(path):
        return path
    return None


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
