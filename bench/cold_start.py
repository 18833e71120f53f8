"""python -m bench.cold_start --model HEAD.skops --image POSTER: one poster, cold, by every way in.

Each measure is a fresh process, the best of --times runs (other work on the machine only ever adds time):
- the floor: importing onnxruntime, NumPy and PIL and opening the head's cached backbone graph, which any
  head on that backbone needs;
- `postergenre predict --model HEAD POSTER`, on the light path (predict/light.py);
- `postergenre predict --dataset NAME POSTER`, the head found as the data set's final model;
- `postergenre.load(HEAD).predict(POSTER)`, the Python API;
- `postergenre serve --model HEAD`: from the start until the page has answered one poster's POST /predict;
- the same head without its arrays file beside it: the full model, as every head was predicted before.
The goals: the command line, --dataset and load() within 2x the floor, the page within 3x.
"""
from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from postergenre.core.workspace import arrays_path
from postergenre.modelfiles import final_model_path
from postergenre.predict.light import load_light


def best_time(command: list[str], times: int) -> float:
    """The fastest wall time of `times` runs of `command`, which must succeed."""
    best = float("inf")
    for _ in range(times):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def page_seconds(serve: list[str], image: Path) -> float:
    """From starting `serve` (a command without --port) until it has answered one POST /predict of `image`."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.perf_counter()
    process = subprocess.Popen([*serve, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=image.read_bytes(), method="POST",
                                     headers={"Content-Type": "image/jpeg"})
    try:
        while process.poll() is None:
            try:
                with urllib.request.urlopen(request, timeout=30) as answered:
                    answered.read()
                return time.perf_counter() - start
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"{' '.join(serve)} ended before answering")
    finally:
        process.terminate()
        process.wait()


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
    postergenre = str(Path(sys.executable).parent / "postergenre")
    command = [postergenre, "predict", "--model"]
    floor = best_time([sys.executable, "-c", "import numpy, onnxruntime, PIL.Image; onnxruntime.InferenceSession("
                       f"{str(light.graph)!r}, providers=['CPUExecutionProvider'])"], args.times)
    ours = best_time([*command, str(args.model), str(args.image)], args.times)
    api = best_time([sys.executable, "-c", f"import postergenre; postergenre.load({str(args.model)!r}).predict("
                     f"{str(args.image)!r})"], args.times)
    page = min(page_seconds([postergenre, "serve", "--model", str(args.model)], args.image) for _ in range(args.times))
    with tempfile.TemporaryDirectory() as tmp:
        final = final_model_path(tmp, "timed")  # the head as a data set's final model, found by --dataset
        shutil.copy(args.model, final)
        shutil.copy(arrays_path(args.model), arrays_path(final))
        dataset = best_time([postergenre, "predict", "--dataset", "timed", "--models-dir", tmp, str(args.image)],
                            args.times)
        alone = Path(tmp) / args.model.name  # the head alone, without its arrays: the full model loads
        shutil.copy(args.model, alone)
        full = best_time([*command, str(alone), str(args.image)], args.times)
    print(f"cold start, one poster, best of {args.times} fresh processes ({args.model.name}):\n"
          f"  floor (import onnxruntime, NumPy, PIL; open the backbone graph): {floor:.2f} s\n"
          f"  postergenre predict --model, light path: {ours:.2f} s ({ours / floor:.1f}x the floor; goal at most 2x)\n"
          f"  postergenre predict --dataset: {dataset:.2f} s ({dataset / floor:.1f}x; goal at most 2x)\n"
          f"  postergenre.load().predict(): {api:.2f} s ({api / floor:.1f}x; goal at most 2x)\n"
          f"  postergenre serve, until the first poster is answered: {page:.2f} s ({page / floor:.1f}x; goal at most "
          f"3x)\n"
          f"  the same head without its arrays (the full model): {full:.2f} s")


if __name__ == "__main__":
    main()
