"""Where a data set's files go: the one place that names them (the Makefile follows the same pattern).

    features/<dataset>-split.json          the seeded train/validation/test split
    features/<dataset>-<backbone>.h5       the embeddings of one backbone (timm:x is written timm-x)
"""
from __future__ import annotations

from pathlib import Path


def file_name(backbone: str) -> str:
    """The backbone's name as it appears in file and model names (timm:x -> timm-x)."""
    return backbone.replace(":", "-")


def split_path(features_dir: Path | str, dataset: str) -> Path:
    return Path(features_dir) / f"{dataset}-split.json"


def features_path(features_dir: Path | str, dataset: str, backbone: str) -> Path:
    return Path(features_dir) / f"{dataset}-{file_name(backbone)}.h5"
