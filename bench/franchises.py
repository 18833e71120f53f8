"""python -m bench.franchises --features F.h5 [F.h5 ...] [--titles TABLE.csv]: new anime, honestly.

For each feature file (a data set with titles), the posters are split twice with the same seed: with each
franchise in one part (`GROUPS=franchise`, the default) and poster by poster (`GROUPS=none`). Embeddings are the
feature file's; only the parts differ. On the grouped split, all of whose test posters are of new franchises:
the logistic head (the poster), the title head (heads/titles.py; with --titles, a second row where it also learns
from that table, evaluated franchises left out), and the two fused by the weight validation mAP chooses. On the
ungrouped split: the logistic head on every test poster, on those with a sibling in training and on those of a
new franchise (evaluation/franchise.py). `--groups` shows what the franchise rule groups instead.
"""
from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from postergenre.evaluation.franchise import seen_and_new, seen_franchise
from postergenre.evaluation.intervals import figure_intervals, paired_difference
from postergenre.evaluation.metrics import choose_thresholds, macro_map
from postergenre.evaluation.sets import predict_sets
from postergenre.extract.features import Features, load_features
from postergenre.heads.estimators import HEADS
from postergenre.heads.titles import fit_title_head, fusion_weight, title_texts
from postergenre.heads.train import tune
from postergenre.modelfiles.titles import fused
from postergenre.posters.data import Poster, read_posters
from postergenre.posters.franchises import SIMILAR, franchise_stem, poster_groups
from postergenre.posters.split import make_split


def with_parts(features: Features, parts: dict[str, list[str]]) -> Features:
    """`features` with the parts of another split of the same posters (those in no part left out)."""
    part_of = {pid: part for part, ids in parts.items() for pid in ids}
    rows = np.array([i for i, pid in enumerate(features.ids) if pid in part_of])
    return replace(features, ids=features.ids[rows], parts=np.array([part_of[pid] for pid in features.ids[rows]]),
                   X=features.X[rows], Y=features.Y[rows], groups=features.groups[rows])


def image_scores(features: Features) -> dict[str, np.ndarray]:
    """The logistic head tuned on the training and validation parts: part -> its scores (val, test)."""
    (X, Y), (X_val, Y_val) = features.part("train"), features.part("val")
    estimator, grid = HEADS["logistic"]
    model, _, _ = tune(estimator, grid, X, Y, X_val, Y_val)
    return {part: model.predict_proba(features.part(part)[0]) for part in ("val", "test")}


def with_interval(features: Features, scores: dict[str, np.ndarray]) -> str:
    """Test mAP with its 95% interval (thresholds chosen on validation), and the test posters."""
    y_val, y = features.part("val")[1], features.part("test")[1]
    test = scores["test"]
    low, high = figure_intervals(y, test, predict_sets(test, choose_thresholds(y_val, scores["val"])))["mAP_macro"]
    return f"{macro_map(y, test):.3f} ({low:.3f}-{high:.3f}), {len(y)}"


def rows(path: str, seed: int, tables: list[str | None]) -> list[str]:
    """The data set's row for each of `tables` (None: the title head learns from the data set's posters alone)."""
    features = load_features(path)
    poster_set = read_posters(features.attrs["data"])
    titles = {p.id: p.titles for p in poster_set.posters if p.titles}
    if not titles:
        return [f"| {features.attrs['dataset']} | no titles: every poster is its own group, the splits are one |"
                + " |" * 7]
    grouped = with_parts(features, make_split(poster_set, seed=seed, grouping="franchise").parts)
    ungrouped_split = make_split(poster_set, seed=seed, grouping="none")
    ungrouped = with_parts(features, ungrouped_split.parts)
    image, image_u = image_scores(grouped), image_scores(ungrouped)
    seen = seen_franchise(ungrouped.ids[ungrouped.parts == "test"], np.array(ungrouped_split.parts["train"]),
                          poster_groups(poster_set.posters))
    found = seen_and_new(ungrouped.part("test")[1], image_u["test"],
                         choose_thresholds(ungrouped.part("val")[1], image_u["val"]), seen)
    ungrouped_cells = [with_interval(ungrouped, image_u)] + [
        f"{f['mAP_macro']:.3f} ({f['interval'][0]:.3f}-{f['interval'][1]:.3f}), {f['posters']}" if f else "none"
        for f in (found.get("seen"), found.get("new"))]
    texts = title_texts(grouped.ids, titles)
    lines = []
    for table in tables:
        title_model = fit_title_head(grouped, texts, titles, table)[0]
        title = {part: title_model.predict_proba(list(texts[grouped.parts == part])) for part in ("val", "test")}
        weight = fusion_weight(grouped.part("val")[1], image["val"], title["val"])
        both = {part: fused(image[part], title[part], weight) for part in ("val", "test")}
        gain = paired_difference(grouped.part("test")[1], both["test"], image["test"])
        lines.append(f"| {features.attrs['dataset']} | {Path(table).name if table else 'its own posters'} | "
                     f"{with_interval(grouped, image)} | {with_interval(grouped, title)} | "
                     f"{with_interval(grouped, both)} (poster weight {weight:.1f}) | {gain['difference']:+.3f} "
                     f"({gain['interval'][0]:+.3f} to {gain['interval'][1]:+.3f}), {gain['verdict']} | "
                     + " | ".join(ungrouped_cells) + " |")
    return lines


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
    parser = argparse.ArgumentParser(prog="python -m bench.franchises", description=__doc__)
    parser.add_argument("--features", nargs="+", required=True, help="feature files of data sets with titles")
    parser.add_argument("--seed", type=int, default=0, help="both splits' seed")
    parser.add_argument("--titles", help="a table of titles and genres the title head learns from too (make titles "
                        "TITLES=...)")
    parser.add_argument("--groups", action="store_true", help="show what the rule groups instead")
    args = parser.parse_args(argv)
    if args.groups:
        for path in args.features:
            features = load_features(path)
            print(f"\n#### {features.attrs['dataset']}\n")
            print("\n".join(group_lines(read_posters(features.attrs["data"]).posters)))
        return
    lines = ["| data | title head learns from | grouped split: poster | title | poster + title | poster + title minus "
             "poster | ungrouped split: poster, all test posters | sibling in training | new franchise |",
             "|---|---|---|---|---|---|---|---|---|"]
    for path in args.features:
        lines += rows(path, args.seed, [None] + ([args.titles] if args.titles else []))
    print("\n".join(lines))
    titles = f" --titles {args.titles}" if args.titles else ""
    print(f"\n*Test mAP (95% interval), test posters. Poster: the logistic head on the feature file's embeddings, C "
          f"chosen on each split's validation mAP; title: heads/titles.py's title head, fitted on the training "
          f"posters' titles (and with --titles, that table's rows too, evaluated franchises left out); "
          f"poster + title: their probabilities weighted as validation mAP chooses, and its paired difference "
          f"from the poster alone on the same resampled test posters. Reproduce: `python -m "
          f"bench.franchises --features {' '.join(args.features)}{titles}`.*")


if __name__ == "__main__":
    main()
