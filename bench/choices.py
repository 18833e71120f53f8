"""python -m bench.choices --results-dir results: is a choice by cross-validation closer to test than one by validation?

For each data set whose heads were cross-validated (`make heads CV=...`), among those heads: the one validation
mAP picks and the one cross-validated mAP picks, each with its choosing score, its test mAP and their difference
(the choice's optimism), and every head's optimism under both rules.
"""
from __future__ import annotations

import argparse

import numpy as np

from postergenre.evaluation.results import overall, read_results


def rows(results: list[dict]) -> list[str]:
    heads = [r for r in results if r["kind"] == "head" and "cv" in r]
    if len(heads) < 2:
        return []
    by_val = max(heads, key=lambda r: overall(r, "val"))
    by_cv = max(heads, key=lambda r: r["cv"]["mAP_macro"]["mean"])
    test = {r["model"]: overall(r, "test") for r in heads}
    val_gap = np.mean([overall(r, "val") - test[r["model"]] for r in heads])
    cv_gap = np.mean([r["cv"]["mAP_macro"]["mean"] - test[r["model"]] for r in heads])
    val_score, cv_score = overall(by_val, "val"), by_cv["cv"]["mAP_macro"]["mean"]
    val_test, cv_test = test[by_val["model"]], test[by_cv["model"]]
    return [f"| {heads[0]['data']} | {len(heads)} | {by_val['model']}: {val_score:.3f}, test {val_test:.3f}, "
            f"{val_score - val_test:+.3f} | {by_cv['model']}: {cv_score:.3f}, test {cv_test:.3f}, "
            f"{cv_score - cv_test:+.3f} | {val_gap:+.3f} | {cv_gap:+.3f} |"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.choices", description=__doc__)
    parser.add_argument("--results-dir", default="results")
    args = parser.parse_args(argv)
    lines = ["| data | heads | picked by validation: val, test, optimism | picked by CV: CV, test, optimism | "
             "mean val - test | mean CV - test |", "|---|---|---|---|---|---|"]
    for results in read_results(args.results_dir).values():
        lines += rows(results)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
