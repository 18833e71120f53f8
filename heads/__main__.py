"""python -m heads --features FILE.h5 [--heads logistic mlknn mlp] [--per-genre-thresholds] [--cv 5x2]
[--mlknn-neighbours hnsw] [--union OTHER.h5]"""
import argparse
import re

from postergenre.core import cli
from postergenre.extract.features import load_features
from postergenre.heads.estimators import HEADS
from postergenre.heads.train import run_heads
from postergenre.heads.union import Union


def folds_by_repeats(text: str) -> tuple[int, int]:
    """'5x2' -> (5, 2): 5 folds, repeated twice."""
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match or int(match[1]) < 2 or int(match[2]) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give FOLDSxREPEATS, e.g. 5x2 (at least 2 folds)")
    return int(match[1]), int(match[2])


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m heads", __doc__)
    parser.add_argument("--features", required=True, help="feature file from `python -m extract`")
    parser.add_argument("--heads", nargs="+", default=None, choices=list(HEADS),
                        help="heads to fit (default: all three; with --union, the logistic head)")
    parser.add_argument("--models-dir", default="models", help="saved heads, for make predict and make serve")
    parser.add_argument("--results-dir", default="results", help="results and scores files")
    parser.add_argument("--per-genre-thresholds", action="store_true",
                        help="one threshold per genre chosen on validation (default: one global threshold)")
    parser.add_argument("--cv", type=folds_by_repeats, default=None, metavar="FOLDSxREPEATS",
                        help="also score each head by repeated cross-validation over the training and validation "
                        "parts, e.g. 5x2; it then chooses between models")
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
    run_heads(features, heads, args.models_dir, args.results_dir, args.per_genre_thresholds, args.cv,
              args.mlknn_neighbours, union)


if __name__ == "__main__":
    main()
