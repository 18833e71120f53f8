"""How a frozen backbone is run: PyTorch, or ONNX Runtime, which is several times faster on the CPU.

PyTorch's CPU kernels for depthwise convolutions (the EfficientNets' building block) are slow;
ONNX Runtime runs the same graph 3-5x faster there (`make bench`, bench.extraction). So on the CPU
a frozen backbone is exported once to ONNX, taking uint8 pixels, and cached as
`<cache>/<backbone>-<size>px-uint8-<weights sha256>.onnx`;
CUDA, reduced precision, Grad-CAM and training stay in PyTorch.

Both engines give the same embeddings to within EMBEDDING_TOLERANCE (tests/test_engines.py), so a
head fitted on one engine's features is used with the other's without refitting.
"""
from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from postergenre.core.device import autocast_dtype, choose_device
from postergenre.core.errors import DataError, first_line
from postergenre.core.files import atomic_write, write_text_atomic
from postergenre.core.runtime import ENGINES, INFERENCE_PRECISION
from postergenre.core.workspace import cached_graph, file_sha256, graph_checksum_path, onnx_graph_path
from postergenre.extract.backbones import Backbone

# Largest absolute difference between the engines' embeddings; measured about 1e-5 on EfficientNet-Lite0.
EMBEDDING_TOLERANCE = 1e-4


def export_onnx(model: nn.Module, image_size: int, path: Path | str, dtype: torch.dtype = torch.float32) -> Path:
    """Write `model` (images of `dtype` -> one row per image) as an ONNX graph with any batch size; atomic."""
    model = model.float().eval().cpu()
    example = torch.zeros(2, 3, image_size, image_size, dtype=dtype)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with atomic_write(path) as tmp, contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # Quiet: the exporter prints progress lines, and warns that the multi-scale taps' per-call scratch
        # list is assigned during the forward pass (it is cleared each call, so no state is lost).
        warnings.filterwarnings("ignore", message="The tensor attributes")
        torch.onnx.export(model, (example,), str(tmp), input_names=["images"], output_names=["outputs"],
                          dynamic_shapes=({0: batch},), dynamo=True, verbose=False)
    return Path(path)


class Normalised(nn.Module):
    """A backbone that takes uint8 pixels (posters.images.pixels_transform) and scales and normalises them itself,
    as eval_transform would, one batch at a time."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # eval_transform's own operations (ToDtype's multiply, Normalize's subtract and divide): bit for bit its input
        return self.model((pixels.float() * (1 / 255) - self.mean) / self.std)


@dataclass
class Embedder:
    """Pixels (n, 3, size, size) as uint8 on the CPU -> embeddings (n, dim) as float32 NumPy."""
    engine: str  # "torch" or "onnxruntime"
    tta: bool
    model: nn.Module | None = None  # the torch engine's
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype | None = None
    session: object | None = None  # the onnxruntime engine's InferenceSession

    def __call__(self, pixels: torch.Tensor) -> np.ndarray:
        if self.session is None:
            pixels = pixels.to(self.device, non_blocking=True, memory_format=torch.channels_last)
            return embed(self.model, pixels, self.tta, self.dtype)
        x = pixels.numpy()
        out = self.session.run(None, {"images": x})[0]
        if self.tta:
            out = (out + self.session.run(None, {"images": np.ascontiguousarray(x[..., ::-1])})[0]) / 2
        return out.astype(np.float32, copy=False)

    def describe(self) -> str:
        return f"{self.engine}, {self.device.type}, {self.dtype or torch.float32}"


def embed(model: nn.Module, images: torch.Tensor, tta: bool, dtype: torch.dtype | None) -> np.ndarray:
    """The torch engine: `model`'s embeddings of `images` (already on its device), averaged with the flip's if `tta`."""
    with torch.inference_mode(), torch.autocast(images.device.type, dtype=dtype, enabled=dtype is not None):
        out = model(images).float()
        if tta:
            out = (out + model(images.flip(3)).float()) / 2
    return out.cpu().numpy()


def resolve_engine(engine: str, device: torch.device, precision: str) -> str:
    """`auto`: ONNX Runtime on the CPU in fp32, PyTorch otherwise (CUDA, bf16, fp16)."""
    if engine not in ENGINES:
        raise DataError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "onnxruntime" if device.type == "cpu" and precision in ("auto", "fp32") else "torch"
    if engine == "onnxruntime" and precision not in ("auto", "fp32"):
        raise DataError(f"--engine onnxruntime runs in fp32; use --engine torch for --precision {precision}")
    return engine


def engine_dtype(engine: str, device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype a resolved engine runs at: ONNX Runtime always in fp32 (None)."""
    return autocast_dtype(device, precision) if engine == "torch" else None


def make_embedder(backbone: Backbone, tta: bool = False, engine: str = "auto",
                  precision: str = INFERENCE_PRECISION, device: torch.device | None = None) -> Embedder:
    """An Embedder running `backbone` on the engine chosen by `resolve_engine` (on `device`, default the best)."""
    device = device or choose_device()
    engine = resolve_engine(engine, device, precision)
    model = Normalised(backbone.model, backbone.mean, backbone.std)
    if engine == "torch":
        model = model.to(device, memory_format=torch.channels_last).eval()
        return Embedder("torch", tta, model, device, engine_dtype(engine, device, precision))
    return Embedder("onnxruntime", tta, session=_onnx_session(backbone, model))


def _onnx_session(backbone: Backbone, model: Normalised):
    import onnxruntime

    if backbone.weights_sha256 == "random":  # random weights differ each time: export afresh, cache nothing
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(model, backbone.image_size, Path(tmp) / "model.onnx", torch.uint8)
            return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    path = onnx_graph_path(backbone.name, backbone.image_size, backbone.weights_sha256)
    if not cached_graph(backbone.name, backbone.image_size, backbone.weights_sha256):  # a changed graph is not trusted
        print(f"{path}: does not match the checksum of its export, exporting it again" if path.is_file() else
              f"exporting {backbone.name} to ONNX once, for ONNX Runtime: {path}", file=sys.stderr, flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, backbone.image_size, path, torch.uint8)
        write_text_atomic(graph_checksum_path(path), file_sha256(path))
    try:
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for a damaged graph
        raise DataError(f"{path}: not a readable ONNX graph ({first_line(e)}); delete it to export it again") \
            from None
