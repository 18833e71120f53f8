"""python -m postergenre.explain poster --model M.safetensors --image P --genre G --out P.png  (one heatmap)
   python -m postergenre.explain genres --model M.safetensors --data D --split S [--features F.h5]  (the report)

Grad-CAM heatmaps of a saved network (make finetune or make cnn): which parts of a poster raised a
genre's score. `genres` writes reports/explain/<dataset>.md, which `make report` takes in.
"""
import argparse
from pathlib import Path

from postergenre.core import cli
from postergenre.core.errors import DataError
from postergenre.explain.genres import write_genre_section
from postergenre.explain.gradcam import grad_cam, overlay
from postergenre.extract.features import load_features
from postergenre.posters.data import read_posters
from postergenre.posters.decode import load_image
from postergenre.posters.split import load_current, split_posters
from postergenre.predict.models import load_model, predict_files


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m postergenre.explain", __doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    poster = commands.add_parser("poster", help="one poster's heatmap for one genre, overlaid, as PNG")
    poster.add_argument("--model", required=True, help="a saved network: models/<dataset>-<model>.safetensors")
    poster.add_argument("--image", required=True, help="the poster")
    poster.add_argument("--genre", required=True, help="the genre whose evidence to show")
    poster.add_argument("--out", required=True, help="PNG to write")
    genres = commands.add_parser("genres", help="the report's 'what each genre looks like' section")
    genres.add_argument("--model", required=True, help="a saved network: models/<dataset>-<model>.safetensors")
    genres.add_argument("--data", required=True, help="data set folder (CSV + images)")
    genres.add_argument("--split", required=True, help="split file: its test part is explained")
    genres.add_argument("--features", default=None, help="feature file, for the nearest neighbours")
    genres.add_argument("--out-dir", default="reports", help="the section goes to OUT_DIR/explain/<dataset>.md")
    args = parser.parse_args(argv)
    cli.run(lambda: explain(args))


def explain(args: argparse.Namespace) -> None:
    predictor = load_model(args.model)
    if predictor.network is None:
        raise DataError(f"{args.model}: heatmaps need a network (make finetune or make cnn), not a head or an "
                        f"ensemble")
    if args.command == "poster":
        if args.genre not in predictor.genres:
            raise DataError(f"{args.model}: no genre {args.genre!r}; it knows {', '.join(predictor.genres)}")
        image, genre = load_image(args.image), predictor.genres.index(args.genre)
        cam, probability = grad_cam(predictor.network, predictor.transform(image), genre)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        overlay(image, cam).save(args.out)
        print(f"{args.out}: {args.genre} {probability:.3f}")
        return
    poster_set = read_posters(args.data)
    split = load_current(args.split, poster_set)
    posters = split_posters(poster_set, split)
    scores, errors = predict_files(predictor, [p.image for p in posters["test"]])
    if errors:
        raise DataError(f"{len(errors)} test posters could not be read, e.g. {next(iter(errors.values()))}")
    features = load_features(args.features) if args.features else None
    command = (f"python -m postergenre.explain genres --model {args.model} --data {args.data} --split {args.split}"
               + (f" --features {args.features}" if args.features else ""))
    print(write_genre_section(predictor, split.dataset, posters, scores, features, args.out_dir, command))


if __name__ == "__main__":
    main()
