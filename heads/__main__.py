"""python -m heads --features FILE.h5 [--heads logistic mlknn mlp] [--per-genre-thresholds]"""
import argparse
import sys

from extract.features import load_features
from heads.estimators import HEADS
from heads.train import run_heads
from posters.data import DataError


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m heads", description=__doc__)
    parser.add_argument("--features", required=True, help="feature file from `python -m extract`")
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=list(HEADS))
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--per-genre-thresholds", action="store_true",
                        help="one threshold per genre chosen on validation (default: one global threshold)")
    args = parser.parse_args()
    try:
        run_heads(load_features(args.features), args.heads, args.models_dir, args.results_dir,
                  args.per_genre_thresholds)
    except DataError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
