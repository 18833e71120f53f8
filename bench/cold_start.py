"""python -m bench.cold_start --model HEAD.skops --image POSTER: one poster from the command line, cold.

Each measure is a fresh process, the best of --times runs (other work on the machine only ever adds time):
- the floor: importing onnxruntime, NumPy and PIL and opening the head's cached backbone graph, which any
  head on that backbone needs;
- `postergenre predict --model HEAD POSTER`, on the light path (predict/light.py);
- the same head without its arrays file beside it: the full model, as every head was predicted before.
The goal (issue 23) is the light path within 2x the floor.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from postergenre.predict.light import load_light


def best_time(command: list[str], times: int) -> float:
    """The fastest wall time of `times` runs of `command`, which must succeed."""
    best = float("inf")
    for _ in range(times):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="a logistic or MLP head (.skops) with its arrays")
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--times", type=int, default=5)
    args = parser.parse_args(argv)
    light = load_light(args.model)
    if light is None:
        sys.exit(f"bench.cold_start: {args.model} has no arrays or no cached backbone graph; run make features and "
                 "make heads (or final) with this version first")
    command = [str(Path(sys.executable).parent / "postergenre"), "predict", "--model"]
    floor = best_time([sys.executable, "-c", "import numpy, onnxruntime, PIL.Image; onnxruntime.InferenceSession("
                       f"{str(light.graph)!r}, providers=['CPUExecutionProvider'])"], args.times)
    ours = best_time([*command, str(args.model), str(args.image)], args.times)
    with tempfile.TemporaryDirectory() as tmp:  # the head alone, without its arrays: the full model loads
        alone = Path(tmp) / args.model.name
        shutil.copy(args.model, alone)
        full = best_time([*command, str(alone), str(args.image)], args.times)
    print(f"cold start, one poster, best of {args.times} fresh processes ({args.model.name}):\n"
          f"  floor (import onnxruntime, NumPy, PIL; open the backbone graph): {floor:.2f} s\n"
          f"  postergenre predict, light path: {ours:.2f} s ({ours / floor:.1f}x the floor; goal at most 2x)\n"
          f"  the same head without its arrays (the full model): {full:.2f} s")


if __name__ == "__main__":
    main()
