"""python -m bench.training: training speed, in posters/second, through the real training loop.

One epoch on a slice of real posters for each model: the backbone fine-tuned with every stage
trainable, with only its last stage (and the new head) trainable, and PosterNet from scratch.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import tempfile

import numpy as np
import torch

from postergenre.cnn.model import IMAGE_SIZE, MEAN, STD, PosterNet
from postergenre.extract.backbones import build_backbone
from postergenre.finetune.model import FineTuned
from postergenre.posters.data import read_posters
from postergenre.posters.images import ImageSpec
from postergenre.posters.split import label_matrix
from postergenre.training.loop import Part, TrainConfig, fit


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__)
    parser.add_argument("--data", required=True, help="a real data set folder")
    parser.add_argument("--posters", type=int, default=256)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    posters = read_posters(args.data).posters[:args.posters + 32]
    genres = sorted({g for p in posters for g in p.genres})
    part = Part([p.image for p in posters], label_matrix([p.genres for p in posters], genres))
    train = Part(part.paths[:args.posters], part.labels[:args.posters])
    val = Part(part.paths[args.posters:], part.labels[args.posters:])
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, augment="light")

    backbone_stages = [name for name, _ in build_backbone(args.backbone, "random").stages]
    runs = {f"finetune {args.backbone}, all stages": ("none", None),
            f"finetune {args.backbone}, last stage only": (backbone_stages[-2], None),
            "PosterNet from scratch": (None, PosterNet)}
    print(f"{len(train.paths)} training posters, batch {args.batch_size}, light augmentation, "
          f"{torch.get_num_threads()} threads")
    print("| model | training posters/s |")
    print("|---|---|")
    for name, (freeze, network) in runs.items():
        torch.manual_seed(0)
        if network is None:
            backbone = build_backbone(args.backbone, "random")
            model = FineTuned(backbone, len(genres), freeze)
            groups, spec = model.parameter_groups(cfg.body_lr, cfg.lr), ImageSpec(backbone.image_size, backbone.mean,
                                                                                    backbone.std)
        else:
            model = network(len(genres))
            groups, spec = model.parameter_groups(cfg.lr), ImageSpec(IMAGE_SIZE, MEAN, STD)
        with tempfile.TemporaryDirectory() as run_dir, contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            state = fit(model, groups, train, val, spec, cfg, run_dir)
        rate = np.median([h["posters_per_s"] for h in state["history"]])
        label = name if freeze is None else f"{name} (frozen up to {freeze})"
        print(f"| {label} | {rate:.1f} |", flush=True)


if __name__ == "__main__":
    main()
