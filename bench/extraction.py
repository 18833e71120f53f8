"""python -m bench.extraction: extraction speed, whole path against the model alone.

For each backbone it times `extract` (decode, resize, forward, save) on real posters and the bare
forward pass on random tensors of the same batch size and precision, so the data-loading overhead
shows as their ratio. Weights are random: speed does not depend on them.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import torch

from core.device import autocast_dtype, choose_device
from extract.backbones import build_backbone
from extract.features import extract
from posters.data import PosterSet, read_posters
from posters.split import make_split


def model_only(name: str, batch_size: int, precision: str, seconds: float = 10.0) -> float:
    """Posters/second of the forward pass alone on random input."""
    backbone = build_backbone(name, "random")
    device = choose_device()
    dtype = autocast_dtype(device, precision)
    model = backbone.model.to(device, memory_format=torch.channels_last)
    x = torch.randn(batch_size, 3, backbone.image_size, backbone.image_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        model(x)  # warm-up
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model(x)
            done += batch_size
        if device.type == "cuda":
            torch.cuda.synchronize()
    return done / (time.perf_counter() - start)


def whole_path(posters: PosterSet, name: str, batch_size: int, precision: str) -> float:
    """Posters/second through `extract`, from image files to the finished feature file."""
    split = make_split(posters, min_count=1)
    backbone = build_backbone(name, "random")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):  # no progress bar in the figures
            extract(posters, split, backbone, Path(tmp) / "bench.h5", batch_size=batch_size, precision=precision)
        return len(posters.posters) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.extraction", description=__doc__)
    parser.add_argument("--data", required=True, help="a real data set folder")
    parser.add_argument("--posters", type=int, default=400)
    parser.add_argument("--backbones", nargs="+", default=["efficientnet_lite0", "resnet50"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    full = read_posters(args.data)
    posters = PosterSet(full.name, full.root, full.posters[:args.posters])
    device = choose_device()
    print(f"{len(posters.posters)} posters of {posters.name}, batch {args.batch_size}, {device.type}, "
          f"{torch.get_num_threads()} threads, precision {args.precision}")
    print("| backbone | whole path (posters/s) | model only (posters/s) | ratio |")
    print("|---|---|---|---|")
    for name in args.backbones:
        path_rate = whole_path(posters, name, args.batch_size, args.precision)
        model_rate = model_only(name, args.batch_size, args.precision)
        print(f"| {name} | {path_rate:.1f} | {model_rate:.1f} | {path_rate / model_rate:.2f} |", flush=True)


if __name__ == "__main__":
    main()
