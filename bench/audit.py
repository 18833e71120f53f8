"""python -m bench.audit --features FILE.h5: does the label audit (make audit) find labels we corrupted?

One genre of `--share` of the posters is flipped (a genre the poster lacks is added, or one it has is removed,
each genre equally likely), every poster is predicted out-of-fold by the logistic head at its mid-grid setting,
and the audit ranks them (audit/labels.py). The figure is the share of corrupted posters among the top k, k the
number corrupted, against chance (`--share`), for each seed. The table goes below the marker in docs/audit.md.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from postergenre.audit.labels import audit_labels
from bench.intervals import HEADS
from postergenre.core.files import write_text_atomic
from postergenre.extract.features import load_features
from postergenre.heads.final import out_of_fold_scores

MARKER = "<!-- bench.audit writes below this line -->"
HEAD = HEADS["logistic"]  # the mid-grid logistic head that bench.intervals simulates with


def corrupt(y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A copy of the (posters, genres) labels with one genre flipped on `share` of the posters, and those posters."""
    rng = np.random.default_rng(seed)
    corrupted = rng.choice(len(y), max(1, round(share * len(y))), replace=False)
    y = y.copy()
    genres = rng.integers(y.shape[1], size=len(corrupted))
    y[corrupted, genres] = 1 - y[corrupted, genres]
    return y, corrupted


def top_k_precision(y: np.ndarray, share: float, seed: int, X: np.ndarray, folds: int = 5) -> float:
    """The share of corrupted posters among the audit's top k, k the number corrupted."""
    noisy, corrupted = corrupt(y, share, seed)
    order = audit_labels(noisy, out_of_fold_scores(HEAD, X, noisy, folds, seed)).order
    return float(np.isin(order[:len(corrupted)], corrupted).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__)
    parser.add_argument("--features", required=True, help="a feature file (make features)")
    parser.add_argument("--share", type=float, default=0.05, help="share of the posters corrupted")
    parser.add_argument("--seeds", type=int, default=3, help="corruptions drawn, one per seed")
    parser.add_argument("--out", default="docs/audit.md", help="the page whose part below the marker is rewritten")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    features = load_features(args.features)
    precisions = [top_k_precision(features.Y, args.share, seed, features.X) for seed in range(args.seeds)]
    ratios = [p / args.share for p in precisions]
    k = max(1, round(args.share * len(features.Y)))
    lines = [MARKER, "", f"*Written by `python -m bench.audit --features {args.features} --share {args.share} "
                         f"--seeds {args.seeds}` ({time.perf_counter() - start:.0f} s).*", "",
             f"{features.attrs['dataset']}: {len(features.Y)} posters, one genre flipped on {k} of them; the "
             f"logistic head's 5-fold out-of-fold probabilities, audited by cleanlab.", "",
             "| seed | corrupted among the top k | chance | times chance |", "|---|---|---|---|",
             *(f"| {seed} | {p:.1%} | {args.share:.1%} | {r:.1f}x |" for seed, (p, r) in
               enumerate(zip(precisions, ratios))),
             f"| mean | {np.mean(precisions):.1%} | {args.share:.1%} | {np.mean(ratios):.1f}x |", ""]
    out = Path(args.out)
    head = out.read_text().split(MARKER)[0] if out.exists() else ""
    write_text_atomic(out, head + "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
