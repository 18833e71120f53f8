"""python -m postergenre.finetune --data DIR --split FILE --backbone NAME --freeze STAGE [--resume | --test-only] ...

Fine-tunes an ImageNet backbone end to end, everything up to --freeze kept frozen.
"""
import argparse

from postergenre.core import cli
from postergenre.core.runspec import RunSpec
from postergenre.extract.backbones import backbone_argument, build_backbone
from postergenre.finetune.model import FineTuned
from postergenre.posters.images import ImageSpec
from postergenre.training.loop import TrainConfig
from postergenre.training.run import add_arguments, train_and_evaluate

DEFAULTS = TrainConfig(epochs=6, batch_size=32, lr=3e-3, body_lr=2e-4, augment="light")


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m postergenre.finetune", __doc__)
    parser.add_argument("--backbone", default="resnet50", type=backbone_argument,
                        help="resnet50, efficientnet_lite0/1/2, or timm:<any timm model name>")
    parser.add_argument("--weights", default=None, help="local weights file for the backbone (default: its ImageNet "
                        "weights)")
    parser.add_argument("--freeze", default="none", help="freeze up to this stage: none, stem, or a stage name")
    parser.add_argument("--image-size", type=int, default=None, help="input size (default: the backbone's own)")
    add_arguments(parser, DEFAULTS)
    args = parser.parse_args(argv)
    cli.run(lambda: finetune(args))


def finetune(args: argparse.Namespace) -> None:
    backbone = build_backbone(args.backbone, args.weights)

    def build(n_genres: int):
        model = FineTuned(backbone, n_genres, args.freeze)
        return model, model.parameter_groups(args.body_lr, args.lr)
    size = args.image_size or backbone.image_size
    run_spec = RunSpec("finetune", args.backbone, args.freeze, args.image_size, args.loss, args.mixup,
                       args.cached_views)
    train_and_evaluate(args, run_spec, build, {"backbone": args.backbone, "freeze": args.freeze},
                       ImageSpec(size, backbone.mean, backbone.std),
                       {"backbone": args.backbone, "weights_sha256": backbone.weights_sha256,
                        "freeze": args.freeze, "image_size": size, "image_size_given": args.image_size is not None})


if __name__ == "__main__":
    main()
