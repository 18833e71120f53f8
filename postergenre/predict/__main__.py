"""python -m postergenre.predict --model FILE (POSTER ... | --images PATH | --data DIR [--split FILE --part test])
[--out FILE.csv] [--json] [--title TITLE | --titles FILE.csv]

Scores new posters with any saved model: for each poster, the predicted genre set (every genre at or above
its threshold, chosen on validation, and the top genre always; with --recall LEVEL, a final head's set that holds
on average that share of a poster's true genres) and every genre's probability. Without
--out it prints one line per poster, `<image>: <genre> <probability>, ...`; with --json the whole report
as JSON; with --out it writes them as CSV and as JSON beside it. Unreadable images are reported and skipped.
With --data the true genres are known, so the predictions are also scored by the evaluation module;
genres the model was not trained on are counted and left out of that score. Notes go to stderr.

With `--title` (one poster) or `--titles` (a CSV of image and title), a final model's title head (make titles,
then make final) is fused with the poster's probabilities (predict/titles.py); the output says which answered.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from postergenre.core import cli
from postergenre.core.errors import DataError
from postergenre.core.files import write_csv_atomic, write_text_atomic
from postergenre.core.runtime import INFERENCE_PRECISION, PRECISIONS
from postergenre.modelfiles import final_model_path
from postergenre.evaluation.recall import RECALL_LEVELS, chosen_sets, realised_recall
from postergenre.evaluation.sets import genre_names
from postergenre.posters.data import PARTS, read_posters
from postergenre.predict.arguments import Predicts, add_model_arguments, chosen_model, load_predictor
from postergenre.predict.light import LightHead
from postergenre.predict.titles import Fused, read_title_table, titles_of, with_title_head

# The full model's modules (torch, scikit-learn) are imported where they are needed: a head with its arrays and a
# cached backbone graph predicts without them (predict/light.py).


def image_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"{path}: the folder holds no files to predict")
        return files
    raise DataError(f"{path}: no such image or folder")


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m postergenre.predict", __doc__)
    add_model_arguments(parser)
    parser.add_argument("posters", nargs="*", metavar="POSTER", help="images, or folders of images, to predict")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--images", help="an image, or a folder of images")
    source.add_argument("--data", help="a data set folder (CSV + images): predictions are also scored")
    parser.add_argument("--split", help="with --data: only the posters of one part of this split")
    parser.add_argument("--part", default="test", choices=PARTS, help="with --split: the part to predict")
    parser.add_argument("--out", help="CSV to write; the JSON goes beside it (default: print to stdout)")
    parser.add_argument("--json", action="store_true", help="print the predictions as JSON")
    parser.add_argument("--recall", choices=RECALL_LEVELS, default=None,
                        help="predict the sets that hold on average at least this share of a poster's true genres "
                             "(a final head's conformal thresholds, evaluation/recall.py) instead of the F1 thresholds")
    parser.add_argument("--weights", default=None, help="local weights of a head's backbone (resnet50 offline)")
    parser.add_argument("--precision", default=INFERENCE_PRECISION, choices=PRECISIONS,
                        help="autocast precision (fp32 by default: the same probabilities on every CPU)")
    parser.add_argument("--workers", type=int, default=1, help="image decoding processes")
    titled = parser.add_mutually_exclusive_group()
    titled.add_argument("--title", help="the anime's title, for one poster: the model's title head answers with it")
    titled.add_argument("--titles", metavar="FILE.csv", help="a CSV of image (file name) and title, one row per poster")
    args = parser.parse_args(argv)
    if sum(map(bool, (args.posters, args.images, args.data))) != 1:
        parser.error("give the posters to predict: image files or folders, or --images, or --data")
    if (args.title or args.titles) and args.data:
        parser.error("--title and --titles are for new posters; --data scores the model on its own")
    cli.run(lambda: predict(args))


def predict(args: argparse.Namespace) -> None:
    path = chosen_model(args)
    predictor = load_predictor(path, args.weights, args.precision, args.engine, args.trust_timm)
    genre_sets = None
    if args.data:
        from postergenre.posters.split import load_current, split_posters
        poster_set = read_posters(args.data)
        if predictor.final and predictor.name == final_model_path("", poster_set.name).stem:
            source = predictor.final.get("source", "the evaluated model")
            raise DataError(f"{predictor.name} is a final model, refit on every labelled poster of "
                            f"{poster_set.name}: its figures there would be on posters it was trained on. Predict "
                            f"new posters (IMAGES=, or paths), or score the evaluated model {source} (MODEL=, or "
                            f"--dataset alone)")
        posters = (split_posters(poster_set, load_current(args.split, poster_set))[args.part] if args.split
                   else poster_set.posters)
        paths, genre_sets = [p.image for p in posters], [p.genres for p in posters]
    else:
        paths = [file for given in (args.posters or [args.images]) for file in image_files(Path(given))]
    titles = None
    if args.title or args.titles:
        if args.title and len(paths) > 1:
            raise DataError(f"--title names one poster's anime; for {len(paths)} posters give --titles FILE.csv")
        titles = [args.title] if args.title else titles_of(paths, read_title_table(args.titles))
        fused = with_title_head(predictor, path)
    if isinstance(predictor, LightHead):
        probabilities, errors = predictor.predict_files(paths)
    else:
        from postergenre.predict.models import predict_files
        probabilities, errors = predict_files(predictor, paths, args.workers)
    if len(errors) == len(paths):
        raise DataError(f"none of the {len(paths)} images could be read (e.g. {errors[0]})")
    if titles is not None:
        readable = [title for i, title in enumerate(titles) if i not in errors]
        predictor, probabilities = fused, fused.fuse(probabilities, readable)
    print(f"answered by {predictor.name}: {'poster and title' if titles else 'the poster alone'}", file=sys.stderr)
    if not np.isfinite(probabilities).all():  # a damaged model: say so, never print NaN (which is not JSON)
        raise DataError(f"{predictor.name}: gave probabilities that are not numbers; its model file is damaged")
    report = prediction_report(predictor, paths, probabilities, errors, genre_sets, args.recall)
    if args.out:
        write_predictions(Path(args.out), predictor, report)
    if args.json:
        print(json.dumps(report, indent=1))
    elif not args.out:
        for row in report["predictions"]:
            print(f"{row['image']}: " + ", ".join(f"{g} {row['probabilities'][g]:.2f}" for g in row["predicted"]))


def prediction_report(predictor: Predicts, paths: list[Path], probabilities: np.ndarray,
                      errors: dict[int, str], genre_sets: list[tuple[str, ...]] | None,
                      recall: str | None = None) -> dict:
    """{"model", "input" (poster, or poster and title), "genres", "thresholds", "recall", "predictions": one
    {"image", "predicted", "probabilities"} per readable poster, "skipped"}, with "scores" and "unknown_genres" when
    the true `genre_sets` are known. With `recall` (a level), the predicted sets are that level's
    (evaluation/recall.py)."""
    kept = [i for i in range(len(paths)) if i not in errors]
    predicted = chosen_sets(probabilities, predictor.thresholds, recall, predictor.recall_thresholds, predictor.name)
    rows = [{"image": str(paths[i]), "predicted": names,
             "probabilities": {g: float(p) for g, p in zip(predictor.genres, probs)}}
            for i, names, probs in zip(kept, genre_names(predicted, predictor.genres), probabilities)]
    report = {"model": predictor.name, "input": "poster and title" if isinstance(predictor, Fused) else "poster",
              "genres": predictor.genres, "thresholds": predictor.thresholds.tolist(),
              "recall": recall and {"level": recall, "threshold": predictor.recall_thresholds[recall]},
              "predictions": rows, "skipped": [{"image": str(paths[i]), "reason": r} for i, r in errors.items()]}
    for reason in errors.values():
        print(f"skipped: {reason}", file=sys.stderr)
    if genre_sets is not None:
        from postergenre.evaluation.metrics import score_with_intervals
        from postergenre.posters.split import label_matrix
        known = set(predictor.genres)
        unknown = Counter(g for i in kept for g in genre_sets[i] if g not in known)
        if unknown:
            listed = ", ".join(f"{g} ({n} posters)" for g, n in unknown.most_common())
            print(f"genres not in the model's vocabulary, left out of the scores: {listed}", file=sys.stderr)
        labels = label_matrix([genre_sets[i] for i in kept], predictor.genres)
        report["unknown_genres"] = dict(unknown)
        report["scores"] = score_with_intervals(labels, probabilities, predicted, predictor.genres)
        overall = report["scores"]["overall"]
        print(f"{len(kept)} posters: mAP {overall['mAP_macro']:.3f}, micro-F1 {overall['f1_micro']:.3f}",
              file=sys.stderr)
        if recall:
            realised = report["recall"]["realised"] = realised_recall(labels, predicted)
            print(f"recall {recall}: realised {realised['recall']:.3f} ({realised['low']:.3f}-{realised['high']:.3f}), "
                  f"{realised['set_size']:.2f} genres a poster", file=sys.stderr)
    return report


def write_predictions(out: Path, predictor: Predicts, report: dict) -> None:
    """The report as CSV (one row per poster) at `out`, and as JSON beside it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = report["predictions"]
    write_csv_atomic(out, ["image", "predicted", *predictor.genres],
                     ([row["image"], "|".join(row["predicted"]), *(f"{p:.9g}" for p in row["probabilities"].values())]
                      for row in rows))  # float32 exact
    write_text_atomic(out.with_suffix(".json"), json.dumps(report, indent=1))
    print(f"{len(rows)} posters predicted, {len(report['skipped'])} skipped: {out} and {out.with_suffix('.json')}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
