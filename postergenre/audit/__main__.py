"""python -m postergenre.audit --features FILE.h5: the labelled posters ranked by how likely their genres are wrong.

The head the evaluation picks among `make heads`'s (evaluation.compare.picked), with its chosen parameters, predicts
every labelled poster out-of-fold (fitted on the other folds), and cleanlab's multi-label label-issue finder
ranks the posters on those probabilities (audit/labels.py), so no poster is scored by a model that saw it. Writes
reports/audit/<dataset>.csv (id, title, given genres, suspected missing, suspected wrong, label quality; most
suspect first) and reports/audit/<dataset>.md and .html: the most suspect posters with their given and suspected
genres. A suspect is a poster to look at again, not a proven error.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from postergenre.audit.labels import LabelAudit, audit_labels
from postergenre.core import cli
from postergenre.core.files import write_csv_atomic, write_text_atomic
from postergenre.core.markup import md_text, slug
from postergenre.evaluation import charts
from postergenre.evaluation.compare import against_trivial, choosing_score, picked, weak_model_sentence
from postergenre.evaluation.report import write_html
from postergenre.evaluation.results import read_results
from postergenre.evaluation.sets import genre_names
from postergenre.extract.features import Features, load_features
from postergenre.heads.final import head_results, out_of_fold_scores, source_estimator
from postergenre.posters.data import read_posters, read_titles


COUNT_FOLLOWING = 0.3  # |Spearman rho| from which the page warns that the ranking mostly follows genre counts


def audit_dataset(features: Features, results_dir: Path | str, out_dir: Path | str, folds: int = 5, seed: int = 0,
                  top: int = 20) -> Path:
    """Audit the labelled posters of `features` with the picked head; returns the CSV's path."""
    dataset, data = features.attrs["dataset"], Path(features.attrs["data"])
    results = read_results(results_dir).get(dataset, [])
    source = picked(head_results(features, results, results_dir))
    rule = choosing_score(source)[1]
    probabilities = out_of_fold_scores(source_estimator(source), features.X, features.Y, folds, seed,
                                       groups=features.groups)
    audit = audit_labels(features.Y, probabilities)
    titles = read_titles(data) if data.is_dir() else {}
    out = Path(out_dir) / f"{dataset}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    # each poster's (given, suspected missing, suspected wrong) genres, most suspect first
    names = [*zip(*(genre_names(m[audit.order], features.genres) for m in (features.Y, audit.missing, audit.wrong)))]
    ids = [str(i) for i in features.ids[audit.order]]
    rows = [[i, " / ".join(titles.get(i, ())), *("|".join(genres) for genres in three), f"{quality:.4f}"]
            for i, three, quality in zip(ids, names, audit.quality[audit.order])]
    write_csv_atomic(out, ["id", "title", "given", "suspected_missing", "suspected_wrong", "label_quality"], rows)
    page = out.with_suffix(".md")
    notes = _notes(features, audit, against_trivial(results, results_dir, dataset, source))
    write_text_atomic(page, "\n".join(_page(features, audit, rows[:top], names[:top], data, out, source["model"],
                                            rule, folds, notes)))
    write_html(page)
    print(f"{out}: {len(rows)} posters ranked by {source['model']}'s {folds}-fold out-of-fold probabilities; "
          f"{audit.flagged} with a genre that looks mislabelled; the top {min(top, len(rows))} in "
          f"{page.with_suffix('.html')}")
    return out


def _notes(features: Features, audit: LabelAudit, trivial: dict | None) -> list[str]:
    """What a reader of the ranking should know first: whether the model that ranks is better than a constant
    answer, and how far the ranking follows each poster's number of genres rather than its labels."""
    rho = float(spearmanr(audit.quality, features.Y.sum(axis=1)).statistic)
    follows = (" The ranking follows genre counts more than wrong labels: read its top with care."
               if abs(rho) >= COUNT_FOLLOWING else "")
    sentence = weak_model_sentence(trivial, "the ranking model")
    return ([sentence, ""] if sentence else []) + [
        f"Rank correlation (Spearman) between a poster's label quality and its number of genres: {rho:+.2f} "
        f"(negative: posters with more genres rank as more suspect).{follows}", ""]


def _page(features: Features, audit: LabelAudit, rows: list[list[str]], names: list[tuple[list[str], ...]],
          data: Path, out: Path, model: str, rule: str, folds: int, notes: list[str]) -> list[str]:
    """The audit's page: the table of `rows` (the CSV's first ones) and, where the images are here, their grid
    with the given and suspected genres (`names`)."""
    dataset = features.attrs["dataset"]
    lines = [f"# Label audit: {md_text(dataset)}", "",
             f"{len(features.Y)} labelled posters, each scored by `{md_text(model)}` (picked by {rule}) fitted on the "
             f"other {folds - 1} of {folds} folds; cleanlab flags a genre on {audit.flagged} of them. The most suspect "
             f"first; the whole ranking is in `{out.name}`. Reproduce: `make audit DATA={md_text(str(data))} "
             f"BACKBONE={md_text(features.attrs['backbone'])}`.", "",
             *notes,
             *([f"Not audited: {md_text(', '.join(np.asarray(features.genres)[audit.constant]))}, on every poster "
                "or on none, so no poster can stand out.", ""] if audit.constant.any() else []),
             "| id | title | given | suspected missing | suspected wrong | label quality |",
             "|---|---|---|---|---|---|",
             *("| " + " | ".join(md_text(cell.replace("|", ", ")) for cell in row) + " |" for row in rows), ""]
    images = {poster.id: poster.image for poster in read_posters(data).posters} if data.is_dir() else {}
    shown = [(images[row[0]], three) for row, three in zip(rows, names) if row[0] in images]
    if shown:  # the data folder is here
        grid = out.parent / f"{slug(dataset)}-suspects.png"
        charts.poster_grid([image for image, _ in shown], [[("given", given)] for _, (given, _, _) in shown],
                           [[("missing?", missing), ("wrong?", wrong)] for _, (_, missing, wrong) in shown],
                           grid, f"{dataset}: the most suspect labels")
        lines += [f"![the most suspect posters]({grid.name})", ""]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m postergenre.audit", __doc__)
    parser.add_argument("--features", required=True, help="the feature file `make heads` used")
    parser.add_argument("--results-dir", default="results", help="where `make heads` wrote its results")
    parser.add_argument("--out-dir", default="reports/audit", help="where the CSV and the page go")
    parser.add_argument("--folds", type=cli.at_least(int, 2), default=5, help="folds of the out-of-fold predictions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=cli.at_least(int, 1), default=20, help="posters shown on the page")
    args = parser.parse_args(argv)
    cli.run(lambda: audit_dataset(load_features(args.features), args.results_dir, args.out_dir, args.folds,
                                  args.seed, args.top))


if __name__ == "__main__":
    main()
