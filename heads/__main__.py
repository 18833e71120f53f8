"""python -m postergenre.heads --features FILE.h5 [--heads logistic mlknn mlp] [--per-genre-thresholds]
[--cv 5x2 | none] [--mlknn-neighbours hnsw] [--union OTHER.h5]

Under SMALL_VALIDATION validation posters, a choice between heads on validation alone is loose, so by default
each head is then also cross-validated (AUTO_CV), which then chooses between them; `--cv none` turns it off."""
import argparse
import re

from postergenre.core import cli
from postergenre.extract.features import load_features
from postergenre.heads.estimators import HEADS
from postergenre.heads.train import run_heads
from postergenre.heads.union import Union


SMALL_VALIDATION, AUTO_CV = 100, (5, 2)


def folds_by_repeats(text: str) -> tuple[int, int] | str | None:
    """'5x2' -> (5, 2): 5 folds, repeated twice; 'none' -> None, no cross-validation; 'auto' stays."""
    if text in ("none", "auto"):
        return None if text == "none" else text
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match or int(match[1]) < 2 or int(match[2]) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give FOLDSxREPEATS, e.g. 5x2 (at least 2 folds)")
    return int(match[1]), int(match[2])


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m postergenre.heads", __doc__)
    parser.add_argument("--features", required=True, help="feature file from `python -m postergenre.extract`")
    parser.add_argument("--heads", nargs="+", default=None, choices=list(HEADS),
                        help="heads to fit (default: all three; with --union, the logistic head)")
    parser.add_argument("--models-dir", default="models", help="saved heads, for make predict and make serve")
    parser.add_argument("--results-dir", default="results", help="results and scores files")
    parser.add_argument("--per-genre-thresholds", action="store_true",
                        help="one threshold per genre chosen on validation (default: one global threshold)")
    parser.add_argument("--cv", type=folds_by_repeats, default="auto", metavar="FOLDSxREPEATS",
                        help="also score each head by repeated cross-validation over the training and validation "
                        f"parts, e.g. 5x2; it then chooses between models (auto: {AUTO_CV[0]}x{AUTO_CV[1]} under "
                        f"{SMALL_VALIDATION} validation posters; none: never)")
    parser.add_argument("--mlknn-neighbours", default="exact", choices=("exact", "hnsw"),
                        help="ML-kNN's neighbour search: hnsw is approximate (faiss), for 100,000 posters or more")
    parser.add_argument("--union", default=None, metavar="OTHER.h5",
                        help="also train on another data set's posters (same backbone), genres mapped and those it "
                             "does not label left unknown; the logistic head only (heads/union.py)")
    args = parser.parse_args(argv)
    cli.run(lambda: heads_command(args))


def heads_command(args: argparse.Namespace) -> None:
    features = load_features(args.features)
    union = Union.with_file(features, args.union) if args.union else None
    heads = args.heads or (["logistic"] if union else list(HEADS))
    cv = args.cv
    if cv == "auto":
        validation = int((features.parts == "val").sum())
        cv = AUTO_CV if validation < SMALL_VALIDATION else None
        if cv:
            print(f"{features.attrs['dataset']}: {validation} validation posters, under {SMALL_VALIDATION}: each "
                  f"head is also cross-validated {cv[0]}x{cv[1]}, which chooses between them (--cv none: not)",
                  flush=True)
    run_heads(features, heads, args.models_dir, args.results_dir, args.per_genre_thresholds, cv,
              args.mlknn_neighbours, union)


if __name__ == "__main__":
    main()
