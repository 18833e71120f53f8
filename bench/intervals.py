"""python -m bench.intervals: how often each interval method's 95% intervals hold what they claim to.

On each feature file, a logistic and an MLP head are fitted on some posters, thresholds are chosen on
a validation slice, and the rest are the population. The target of a test part's interval is the
expected figure of a random part of that size from the population (the mean over TARGET_PARTS parts).
Then PARTS test parts are drawn; each gets every method's interval for each head's figures and for the
paired difference (logistic minus MLP), and the bench counts how often the interval holds the target,
how wide it is, and how often a difference is called with the wrong sign. The table goes below the
marker in docs/evaluation.md.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

from postergenre.core.files import write_text_atomic
from postergenre.evaluation.intervals import FIGURES, METHODS, figure_intervals, figure_statistic, paired_difference
from postergenre.evaluation.metrics import choose_thresholds
from postergenre.evaluation.sets import predict_sets
from postergenre.extract.features import load_features
from postergenre.heads.estimators import logistic_head, mlp_head
from postergenre.heads.train import fit_quietly

MARKER = "<!-- bench.intervals writes below this line -->"
TARGET_PARTS = 2000
HEADS = {"logistic": logistic_head(C=0.0003), "mlp": mlp_head(alpha=10.0)}  # mid-grid settings (heads/estimators.py)


def population_scores(X: np.ndarray, Y: np.ndarray, heads: dict[str, BaseEstimator], train: int, val: int,
                      seed: int) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Fit each head on `train` posters, choose its threshold on the next `val`: the population's labels and
    {head: (scores, predicted sets)} on the rest."""
    order = np.random.default_rng(seed).permutation(len(Y))
    fit_rows, val_rows, pool = order[:train], order[train:train + val], order[train + val:]
    models = {}
    for name, head in heads.items():
        head = fit_quietly(head, X[fit_rows], Y[fit_rows])
        thresholds = choose_thresholds(Y[val_rows], head.predict_proba(X[val_rows]))
        scores = head.predict_proba(X[pool])
        models[name] = (scores, predict_sets(scores, thresholds))
    return Y[pool], models


def simulate(Y: np.ndarray, models: dict[str, tuple[np.ndarray, np.ndarray]], size: int, parts: int, seed: int,
             resamples: int, target_parts: int = TARGET_PARTS) -> dict:
    """Draw `parts` test parts of `size` from a population with labels Y and {model: (scores, predicted sets)}:
    coverage, mean width and estimate-inside rates per model, figure and method; coverage, call and wrong-sign
    rates of the paired difference (first model minus second, where there are two) per method; the size bias
    of macro mAP (a part's expected mAP minus the population's)."""
    rng = np.random.default_rng(seed)
    draws = np.zeros((target_parts, len(Y)))  # each row: one random part of `size` population posters
    for row in draws:
        row[rng.choice(len(Y), size, replace=False)] = 1
    on_draws, targets, size_bias = {}, {}, {}
    for name, (scores, predicted) in models.items():
        figures = figure_statistic(Y, scores, predicted)
        on_draws[name] = figures(draws)
        targets[name] = np.nanmean(on_draws[name], axis=1)
        size_bias[name] = float(targets[name][0] - figures(np.ones((1, len(Y))))[0, 0])
    names = list(models)
    paired = len(names) >= 2
    true_difference = float(np.nanmean(on_draws[names[0]][0] - on_draws[names[1]][0])) if paired else np.nan

    held = {(n, f, m): [] for n in names for f in FIGURES for m in METHODS}
    width, inside = {k: [] for k in held}, {k: [] for k in held}
    difference = {m: {"held": 0, "wrong_sign": 0, "called": 0} for m in METHODS}
    for part in range(parts):
        rows = rng.choice(len(Y), size, replace=False)
        y = Y[rows]
        for name, (scores, predicted) in models.items():
            estimate = figure_statistic(y, scores[rows], predicted[rows])(np.ones((1, size)))[:, 0]
            for method in METHODS:
                bounds = figure_intervals(y, scores[rows], predicted[rows], seed=part, method=method,
                                          resamples=resamples)
                for i, figure in enumerate(FIGURES):
                    low, high = bounds[figure]
                    held[name, figure, method].append(low <= targets[name][i] <= high)
                    width[name, figure, method].append(high - low)
                    inside[name, figure, method].append(low <= estimate[i] <= high)
        for method in METHODS if paired else ():
            d = paired_difference(y, models[names[0]][0][rows], models[names[1]][0][rows], seed=part,
                                  method=method, resamples=resamples)
            low, high = d["interval"]
            difference[method]["held"] += low <= true_difference <= high
            difference[method]["called"] += d["verdict"] != "not distinguishable"
            difference[method]["wrong_sign"] += (d["verdict"] == "better" and true_difference < 0) or \
                                                (d["verdict"] == "worse" and true_difference > 0)
    return {"coverage": {k: float(np.mean(v)) for k, v in held.items()},
            "width": {k: float(np.mean(v)) for k, v in width.items()},
            "inside": {k: float(np.mean(v)) for k, v in inside.items()},
            "difference": {m: {k: v / parts for k, v in d.items()} for m, d in difference.items()},
            "true_difference": true_difference, "size_bias": size_bias, "targets": targets}


def table(dataset: str, result: dict, size: int, parts: int, train: int, val: int, population: int) -> list[str]:
    lines = [f"### {dataset}", "",
             f"Heads fitted on {train} posters, thresholds chosen on {val}; {parts} test parts of {size} "
             f"posters drawn from the other {population}. Target: the figure's expected value on a part of "
             f"{size} (the mean over {TARGET_PARTS} parts).", "",
             "| head | figure | target | method | coverage | mean width | estimate inside |",
             "|---|---|---|---|---|---|---|"]
    for (name, figure, method), coverage in result["coverage"].items():
        target = result["targets"][name][FIGURES.index(figure)]
        lines.append(f"| {name} | {figure} | {target:.3f} | {method} | {coverage:.1%} | "
                     f"{result['width'][name, figure, method]:.3f} | {result['inside'][name, figure, method]:.1%} |")
    first, second = list(result["targets"])[:2]
    lines += ["", f"Paired difference, {first} minus {second} in mAP: expected {result['true_difference']:+.4f} "
                  f"on a part of {size}.", "",
              "| method | coverage | called (not 'not distinguishable') | wrong sign |", "|---|---|---|---|"]
    for method, d in result["difference"].items():
        lines.append(f"| {method} | {d['held']:.1%} | {d['called']:.1%} | {d['wrong_sign']:.1%} |")
    bias = ", ".join(f"{n} {b:+.3f}" for n, b in result["size_bias"].items())
    return lines + ["", f"Size bias of macro mAP (expected mAP of a {size}-poster part minus the mAP of all "
                        f"{population} population posters): {bias}.", ""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.intervals", description=__doc__)
    parser.add_argument("--features", nargs="+", required=True, help="feature files (make features)")
    parser.add_argument("--train", type=int, default=2000, help="posters the heads are fitted on (at most a half)")
    parser.add_argument("--val", type=int, default=200, help="posters the thresholds are chosen on")
    parser.add_argument("--size", type=int, default=190, help="posters in a test part")
    parser.add_argument("--parts", type=int, default=200, help="test parts per data set")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/evaluation.md", help="the page whose part below the marker is rewritten")
    args = parser.parse_args(argv)
    out = Path(args.out)
    head_text = out.read_text().split(MARKER)[0] if out.exists() else ""
    command = (f"python -m bench.intervals --features {' '.join(args.features)} --train {args.train} "
               f"--val {args.val} --size {args.size} --parts {args.parts} --resamples {args.resamples} "
               f"--seed {args.seed}")
    lines = [MARKER, "", f"*Written by `{command}`.*", ""]
    for path in args.features:
        features = load_features(path)
        start = time.perf_counter()
        train = min(args.train, len(features.Y) // 2)
        Y, models = population_scores(features.X, features.Y, HEADS, train,
                                      args.val, args.seed)
        result = simulate(Y, models, args.size, args.parts, args.seed, args.resamples)
        section = table(Path(path).stem, result, args.size, args.parts, train, args.val, len(Y))
        lines += section
        print("\n".join(section) + f"\n[bench.intervals] {path}: {time.perf_counter() - start:.0f} s", flush=True)
    write_text_atomic(out, head_text + "\n".join(lines))


if __name__ == "__main__":
    main()
