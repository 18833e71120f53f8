"""python -m postergenre.ensemble --dataset NAME: average the scores of a data set's models, members chosen on
validation (ensemble/combine.py), written as results/<dataset>/ensemble.json beside theirs."""
from __future__ import annotations

import argparse

from postergenre.core import cli
from postergenre.ensemble.combine import ensemble
from postergenre.evaluation.results import overall


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m postergenre.ensemble", __doc__)
    parser.add_argument("--dataset", required=True, help="the data set's name, e.g. anime-posters")
    parser.add_argument("--results-dir", default="results", help="results and scores files")
    args = parser.parse_args(argv)
    cli.run(lambda: ensemble_command(args))


def ensemble_command(args: argparse.Namespace) -> None:
    result = ensemble(args.results_dir, args.dataset)
    test = result["test"]["overall"]
    print(f"{args.dataset} ensemble {result['members']}: val mAP {overall(result, 'val'):.3f}, "
          f"test mAP {test['mAP_macro']:.3f}, micro-F1 {test['f1_micro']:.3f}")


if __name__ == "__main__":
    main()
