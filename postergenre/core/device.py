"""Where models run and at what precision: CUDA when present, the CPU otherwise; one process or several
under torchrun."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist




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


@dataclass
class Distributed:
    """This process's place among torchrun's processes; rank 0 (the main one) writes the shared files."""
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def setup_distributed() -> tuple[Distributed, torch.device]:
    """Join the torchrun process group when launched by torchrun; a single process otherwise."""
    device = choose_device()
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Distributed(), device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return Distributed(dist.get_rank(), dist.get_world_size()), device
