"""python -m bench.scale: the two-stage pipeline at the mission's scale, timed, with each step's peak memory.

The Kaggle 2023 table has 24,905 anime. This draws that many synthetic posters (`posters sample`),
then runs the commands behind `make split features heads report` on them, each step as its own
process, and prints a table of wall time and peak resident memory per step; each head is its own
step, so its tuning time shows. The synthetic posters are as large as real ones (about 17 kB), so
decoding costs what it would; their figures mean nothing, only the times and memory do.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from postergenre.core.workspace import features_path, split_path

HEADS = ("logistic", "mlknn", "mlp")


def timed(args: list[str]) -> tuple[float, float]:
    """Run `python -m ...args`; (seconds, peak resident MB of the process and the workers it waited for)."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"python -m {' '.join(args)} failed")
    return time.perf_counter() - start, usage.ru_maxrss / 1024  # Linux reports kB


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--posters", type=int, default=25_000)
    parser.add_argument("--backbone", default="efficientnet_lite0_multiscale")
    parser.add_argument("--work", default="runs/scale", help="data, features, results and report go here")
    args = parser.parse_args(argv)
    work = Path(args.work)
    data, name = work / "data" / "synthetic-25k", "synthetic-25k"
    split, features = split_path(work, name), features_path(work, name, args.backbone)
    folders = ["--models-dir", str(work / "models"), "--results-dir", str(work / "results")]
    steps = [("draw the posters", ["posters", "sample", "--out-dir", str(data), "--posters", str(args.posters)]),
             ("split", ["posters", "split", "--data", str(data), "--out", str(split)]),
             (f"features ({args.backbone})", ["extract", "--data", str(data), "--split", str(split), "--backbone",
                                              args.backbone, "--out", str(features)])]
    steps += [(f"heads: {head}", ["heads", "--features", str(features), "--heads", head, *folders]) for head in HEADS]
    steps += [("report", ["evaluation.report", "--results-dir", str(work / "results"), "--features-dir", str(work),
                          "--out-dir", str(work / "report"), "--models-dir", str(work / "models")])]
    print(f"{args.posters} synthetic posters, {os.cpu_count()} CPUs; python -m bench.scale --posters {args.posters}")
    print("| step | wall time | peak memory |\n|---|---|---|")
    total = 0.0
    for label, command in steps:
        seconds, peak = timed(command)
        total += seconds
        print(f"| {label} | {seconds / 60:.1f} min | {peak / 1024:.1f} GB |", flush=True)
    print(f"| all | {total / 60:.1f} min | |")


if __name__ == "__main__":
    main()
