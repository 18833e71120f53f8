"""python -m bench.extraction: extraction speed per backbone and engine, whole path against the model alone.

For each backbone and engine (PyTorch eager, ONNX Runtime) it times `extract` (decode, resize,
forward, save) on real posters and the bare forward pass on random tensors of the same batch size,
so the data-loading overhead shows as their ratio and the engines' speed-up as theirs. Weights are
random: speed does not depend on them.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

import torch

from postergenre.core.device import choose_device
from postergenre.core.runtime import ENGINES, PRECISIONS
from postergenre.extract.backbones import Backbone, build_backbone
from postergenre.extract.engines import make_embedder
from postergenre.extract.features import extract
from postergenre.posters.data import PosterSet, read_posters
from postergenre.posters.split import make_split


def random_backbone(name: str) -> Backbone:
    """`name` with random weights, named so that its ONNX graph is exported once in this run's cache."""
    backbone = build_backbone(name, "random")
    backbone.weights_sha256 = f"random-{os.getpid()}"
    return backbone


def model_only(backbone: Backbone, engine: str, batch_size: int, precision: str, seconds: float = 10.0) -> float:
    """Posters/second of the forward pass alone on random input (from CPU memory, as extraction gives it)."""
    embedder = make_embedder(backbone, engine=engine, precision=precision)
    x = torch.randint(0, 256, (batch_size, 3, backbone.image_size, backbone.image_size), dtype=torch.uint8)
    embedder(x)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        embedder(x)  # returns NumPy, so CUDA work is finished when it returns
        done += batch_size
    return done / (time.perf_counter() - start)


def whole_path(posters: PosterSet, backbone: Backbone, engine: str, batch_size: int, precision: str) -> float:
    """Posters/second through `extract`, from image files to the finished feature file (the export excluded)."""
    split = make_split(posters, min_count=1)
    few = PosterSet(posters.name, posters.root, posters.posters[:batch_size])
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):  # no progress bar
        extract(few, make_split(few, min_count=1), backbone, Path(tmp) / "warm-up.h5", batch_size=batch_size,
                precision=precision, engine=engine)  # for onnxruntime: the export, which is then cached
        start = time.perf_counter()
        extract(posters, split, backbone, Path(tmp) / "bench.h5", batch_size=batch_size, precision=precision,
                engine=engine)
        return len(posters.posters) / (time.perf_counter() - start)


def engine_speeds(posters: PosterSet, name: str, engines: list[str], batch_size: int = 8,
                  precision: str = "fp32") -> dict[str, dict[str, float]]:
    """engine -> {"whole_path", "model_only"} posters/s of backbone `name`; graphs go to a scratch cache."""
    speeds, cache = {}, os.environ.get("POSTERGENRE_CACHE")
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["POSTERGENRE_CACHE"] = scratch  # graphs of random weights: not worth keeping
        try:
            backbone = random_backbone(name)
            for engine in engines:
                speeds[engine] = {"whole_path": whole_path(posters, backbone, engine, batch_size, precision),
                                  "model_only": model_only(backbone, engine, batch_size, precision)}
        finally:
            del os.environ["POSTERGENRE_CACHE"]
            if cache is not None:
                os.environ["POSTERGENRE_CACHE"] = cache
    return speeds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.extraction", description=__doc__)
    parser.add_argument("--data", required=True, help="a real data set folder")
    parser.add_argument("--posters", type=int, default=400)
    parser.add_argument("--backbones", nargs="+", default=["efficientnet_lite0", "resnet50"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--engines", nargs="+", default=["torch", "onnxruntime"], choices=ENGINES[1:])
    args = parser.parse_args(argv)
    full = read_posters(args.data)
    posters = PosterSet(full.name, full.root, full.posters[:args.posters])
    print(f"{len(posters.posters)} posters of {posters.name}, batch {args.batch_size}, {choose_device().type}, "
          f"{torch.get_num_threads()} threads, precision {args.precision}")
    print("| backbone | engine | whole path (posters/s) | model only (posters/s) | whole / model only "
          "| whole path vs torch |")
    print("|---|---|---|---|---|---|")
    for name in args.backbones:
        speeds = engine_speeds(posters, name, args.engines, args.batch_size, args.precision)
        for engine, speed in speeds.items():
            versus = f"{speed['whole_path'] / speeds['torch']['whole_path']:.2f}x" if "torch" in speeds else "-"
            print(f"| {name} | {engine} | {speed['whole_path']:.1f} | {speed['model_only']:.1f} "
                  f"| {speed['whole_path'] / speed['model_only']:.2f} | {versus} |", flush=True)


if __name__ == "__main__":
    main()
