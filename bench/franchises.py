"""python -m postergenre.bench.franchises --features F.h5 [F.h5 ...]: what a split grouped by franchise changes.

For each feature file (a data set with titles), the posters are split twice with the same seed: poster by poster
(`GROUPS=none`) and with each franchise in one part (`GROUPS=franchise`, the default). The logistic head is tuned
on each split's validation part and scored on its test part: on the grouped split's, all new franchises; on the
ungrouped split's, separately on the test posters with a training sibling and on those without
(evaluation/franchise.py). Embeddings are the feature file's; only the parts differ.
"""
from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from postergenre.evaluation.franchise import seen_and_new, seen_franchise
from postergenre.evaluation.intervals import figure_intervals
from postergenre.evaluation.metrics import choose_thresholds, macro_map
from postergenre.evaluation.sets import predict_sets
from postergenre.extract.features import Features, load_features
from postergenre.heads.estimators import HEADS
from postergenre.heads.train import tune
from postergenre.posters.data import Poster, read_posters
from postergenre.posters.franchises import SIMILAR, franchise_stem, poster_groups
from postergenre.posters.split import make_split


def scored(features: Features, parts: dict[str, list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The logistic head tuned on `parts`' training and validation posters: (test ids, test labels, test scores,
    thresholds chosen on validation)."""
    row = {pid: i for i, pid in enumerate(features.ids)}
    rows = {part: np.array([row[pid] for pid in ids if pid in row]) for part, ids in parts.items()}
    (X, Y), (X_val, Y_val) = ((features.X[rows[p]], features.Y[rows[p]]) for p in ("train", "val"))
    estimator, grid = HEADS["logistic"]
    model, _, _ = tune(estimator, grid, X, Y, X_val, Y_val)
    thresholds = choose_thresholds(Y_val, model.predict_proba(X_val))
    test = rows["test"]
    return features.ids[test], features.Y[test], model.predict_proba(features.X[test]), thresholds


def with_interval(y: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> str:
    low, high = figure_intervals(y, scores, predict_sets(scores, thresholds))["mAP_macro"]
    return f"{macro_map(y, scores):.3f} ({low:.3f}-{high:.3f}), {len(y)} posters"


def rows(path: str, seed: int) -> list[str]:
    features = load_features(path)
    posters = read_posters(features.attrs["data"])
    if not any(p.titles for p in posters.posters):
        return [f"| {features.attrs['dataset']} | no titles: every poster is its own group, the splits are one | "
                "| | |"]
    groups = poster_groups(posters.posters)
    grouped = make_split(posters, seed=seed, grouping="franchise")
    ungrouped = make_split(posters, seed=seed, grouping="none")
    _, y, scores, thresholds = scored(features, grouped.parts)
    ids, y_u, scores_u, thresholds_u = scored(features, ungrouped.parts)
    found = seen_and_new(y_u, scores_u, thresholds_u, seen_franchise(ids, np.array(ungrouped.parts["train"]), groups))
    cells = [f"{f['mAP_macro']:.3f} ({f['interval'][0]:.3f}-{f['interval'][1]:.3f}), {f['posters']} posters"
             for f in (found.get("seen"), found.get("new")) if f]
    return [f"| {features.attrs['dataset']} | {with_interval(y, scores, thresholds)} | "
            f"{with_interval(y_u, scores_u, thresholds_u)} | {' | '.join(cells)} |"]


def group_lines(posters: list[Poster], largest: int = 20, borderline: int = 12) -> list[str]:
    """What the rule groups: its `largest` groups, and stem pairs just under and just over SIMILAR."""
    groups = poster_groups(posters)
    sizes = Counter(groups.values())
    titles = {p.id: p.titles[0] for p in posters if p.titles}
    members = {name: sorted(titles[pid] for pid, g in groups.items() if g == name and pid in titles)
               for name, _ in sizes.most_common(largest)}
    lines = [f"{len(posters)} posters, {len(sizes)} groups, {sum(n == 1 for n in sizes.values())} of one poster. "
             f"The {largest} largest:", "", "| group | posters | some titles |", "|---|---|---|"]
    lines += [f"| {name} | {sizes[name]} | {'; '.join(found[:3])} |" for name, found in members.items()]
    stems = sorted({franchise_stem(t) for p in posters for t in p.titles} - {""})
    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)).fit_transform(stems)
    cosine = (vectors @ vectors.T).tocoo()
    near = sorted((round(float(c), 2), stems[a], stems[b]) for a, b, c in zip(cosine.row, cosine.col, cosine.data)
                  if a < b and SIMILAR - 0.1 <= c < SIMILAR + 0.05)
    step = max(1, len(near) // borderline)
    lines += ["", f"Stem pairs near the cosine threshold {SIMILAR} (every {step}th of {len(near)}; at or above it "
              "they join, unless a shared whole-word prefix joins them anyway):", "",
              "| cosine | stem | stem | joined |", "|---|---|---|---|"]
    lines += [f"| {c:.2f} | {a} | {b} | {'yes' if c >= SIMILAR else 'no'} |" for c, a, b in near[::step]]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m postergenre.bench.franchises", description=__doc__)
    parser.add_argument("--features", nargs="+", required=True, help="feature files of data sets with titles")
    parser.add_argument("--seed", type=int, default=0, help="both splits' seed")
    parser.add_argument("--groups", action="store_true", help="show what the rule groups instead")
    args = parser.parse_args(argv)
    if args.groups:
        for path in args.features:
            features = load_features(path)
            print(f"\n#### {features.attrs['dataset']}\n")
            print("\n".join(group_lines(read_posters(features.attrs["data"]).posters)))
        return
    lines = ["| data | grouped split: test mAP (new franchises) | ungrouped split: test mAP, all | "
             "ungrouped: sibling in training | ungrouped: new franchise |", "|---|---|---|---|---|"]
    for path in args.features:
        lines += rows(path, args.seed)
    print("\n".join(lines))
    print(f"\n*Logistic head, C chosen on each split's validation mAP; 95% intervals by resampling test posters. "
          f"Reproduce: `python -m postergenre.bench.franchises --features {' '.join(args.features)}`.*")


if __name__ == "__main__":
    main()
