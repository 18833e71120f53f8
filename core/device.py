"""Where models run and at what precision: CUDA when present, the CPU otherwise."""
from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def choose_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for `precision` (auto, fp32, bf16, fp16); None means plain fp32."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        # bf16 only pays on CPUs with native bf16 units; elsewhere it is emulated and slower.
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
