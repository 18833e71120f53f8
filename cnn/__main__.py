"""python -m postergenre.cnn --data DIR --split FILE [--resume | --test-only] ...

Trains PosterNet (cnn/model.py) from scratch with the shared training loop.
"""
import argparse

from postergenre.cnn.model import IMAGE_SIZE, MEAN, STD, PosterNet
from postergenre.core import cli
from postergenre.core.runspec import POSTERNET_WIDTHS, RunSpec
from postergenre.posters.images import ImageSpec
from postergenre.training.loop import TrainConfig
from postergenre.training.run import add_arguments, train_and_evaluate

DEFAULTS = TrainConfig(epochs=15, batch_size=32, lr=3e-3, warmup_epochs=1.0, augment="strong", patience=4)


def widths(text: str) -> tuple[int, ...]:
    """'32,64,128,256' -> (32, 64, 128, 256): the channels of each block."""
    try:
        values = tuple(int(w) for w in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(0 < w <= 1024 for w in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give block widths as comma-separated counts, e.g. 32,64,128,256")
    return values


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m postergenre.cnn", __doc__)
    parser.add_argument("--widths", type=widths, default=POSTERNET_WIDTHS, help="channels of the blocks")
    add_arguments(parser, DEFAULTS)
    args = parser.parse_args(argv)
    cli.run(lambda: train_posternet(args))


def train_posternet(args: argparse.Namespace) -> None:
    def build(n_genres: int):
        model = PosterNet(n_genres, args.widths)
        return model, model.parameter_groups(args.lr)
    text = ",".join(map(str, args.widths))
    run_spec = RunSpec("cnn", loss=args.loss, mixup=args.mixup, widths=args.widths)
    train_and_evaluate(args, run_spec, build, {"widths": list(args.widths)}, ImageSpec(IMAGE_SIZE, MEAN, STD),
                       {"backbone": f"PosterNet {text} (from scratch)", "weights_sha256": "none"})


if __name__ == "__main__":
    main()
