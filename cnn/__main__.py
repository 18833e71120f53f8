"""python -m cnn --data DIR --split FILE [--resume | --test-only] ...

Trains PosterNet (cnn/model.py) from scratch with the shared training loop.
"""
import argparse
import sys

from cnn.model import IMAGE_SIZE, MEAN, STD, PosterNet
from posters.data import DataError
from posters.images import ImageSpec
from training.loop import TrainConfig
from training.run import add_arguments, train_and_evaluate

DEFAULTS = TrainConfig(epochs=15, batch_size=32, lr=3e-3, warmup_epochs=1.0, augment="strong", patience=4)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m cnn", description=__doc__)
    parser.add_argument("--widths", default="32,64,128,256", help="channels of the four blocks")
    add_arguments(parser, DEFAULTS)
    args = parser.parse_args()
    widths = tuple(int(w) for w in args.widths.split(","))
    try:
        def build(n_genres: int):
            model = PosterNet(n_genres, widths)
            return model, model.parameter_groups(args.lr)
        name = "cnn-posternet" if args.widths == "32,64,128,256" else f"cnn-posternet-{args.widths.replace(',', '-')}"
        train_and_evaluate(args, name, "cnn", build, {"widths": list(widths)}, ImageSpec(IMAGE_SIZE, MEAN, STD),
                           {"backbone": f"PosterNet {args.widths} (from scratch)", "weights_sha256": "none"})
    except (DataError, ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {str(e).strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
