"""Every model's name, made here only: a trained network's from its run spec, a head's and a baseline's from
theirs.

    finetune-<backbone>-freeze-<stage>[-<size>px][-<loss>][-mixup<alpha>][-cached<views>][-union-<set>][-seed<n>]
    cnn-posternet[-<widths>][-union-<set>][-seed<n>]
    <backbone>-<head>[-union-<set>]    baseline-<rule>    ensemble

Results record their spec (`"spec"`), so the report and the bench read its fields and ask it for the name and
the command that reproduces the run, instead of building or parsing names of their own.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from postergenre.core.workspace import file_name

POSTERNET_WIDTHS = (32, 64, 128, 256)
# The backbones extract.backbones builds, by name; model files name one of these or a timm model.
BACKBONE_NAMES = ("resnet50", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
                  "efficientnet_lite0_multiscale", "efficientnet_lite2_multiscale")
TIMM_PREFIX = "timm:"
# the recall levels of genre sets, as model files and the command line spell them
RECALL_LEVELS = ("0.8", "0.9", "0.95")
# timm's model names: lower-case letters, digits, "_" and "." (a pretrained tag); nothing that reaches a path.
_TIMM_NAME = re.compile(r"timm:[a-z0-9_]+(\.[a-z0-9_]+)?")


def is_backbone_name(name: object) -> bool:
    return isinstance(name, str) and (name in BACKBONE_NAMES or bool(_TIMM_NAME.fullmatch(name)))


def head_name(backbone: str, head: str, union: str | None = None) -> str:
    """A head fitted on `backbone`'s features (with `union`, a data set's name: trained with its posters too)."""
    return f"{file_name(backbone)}-{head}" + (f"-union-{union}" if union else "")


def baseline_name(rule: str) -> str:
    return f"baseline-{rule}"


PRIOR_BASELINE = baseline_name("prior")  # what every model's margin is measured against
ENSEMBLE = "ensemble"  # a data set's ensemble, as `make ensemble` names it


def make_command(targets: str, **settings: object) -> str:
    """`make TARGETS SETTING=value ...`, a setting of None left out: the one way every figure, report row and model
    card says how to reproduce itself."""
    return " ".join(["make", targets, *(f"{name}={value}" for name, value in settings.items() if value is not None)])


@dataclass(frozen=True)
class RunSpec:
    kind: str  # "finetune" or "cnn"
    backbone: str | None = None  # finetune: the ImageNet backbone
    freeze: str | None = None  # finetune: frozen up to this stage
    image_size: int | None = None  # finetune: the input size given; None is the backbone's own
    loss: str = "bce"
    mixup: float = 0.0
    cached_views: int = 0  # finetune: trained on cached activations, this many views a poster
    widths: tuple[int, ...] = POSTERNET_WIDTHS  # cnn: the channels of PosterNet's blocks
    union: str | None = None  # the other data set trained with (--union-data), by name
    seed: int = 0

    @property
    def name(self) -> str:
        if self.kind == "finetune":
            name = (f"finetune-{file_name(self.backbone)}-freeze-{self.freeze}"
                    + (f"-{self.image_size}px" if self.image_size else "")
                    + (f"-{self.loss}" if self.loss != "bce" else "") + (f"-mixup{self.mixup:g}" if self.mixup else "")
                    + (f"-cached{self.cached_views}" if self.cached_views else ""))
        else:
            name = "cnn-posternet" + ("" if self.widths == POSTERNET_WIDTHS else "-" + "-".join(map(str, self.widths)))
        return name + (f"-union-{self.union}" if self.union else "") + (f"-seed{self.seed}" if self.seed else "")

    def flags(self) -> list[str]:
        """The flags of `python -m postergenre.finetune` / `python -m postergenre.cnn` beyond --data, --split,
        --epochs and the folders; --union-data takes a folder, so it is the caller's."""
        chosen = ["--backbone", self.backbone, "--freeze", self.freeze] if self.kind == "finetune" else []
        return chosen + self._train_args() + (["--seed", str(self.seed)] if self.seed else [])

    def command(self, data: str, epochs: int, augment: str) -> str:
        """The make command that reproduces the run on the data set folder `data`."""
        flags = self._train_args() + (["--union-data", str(Path(data).parent / self.union)] if self.union else [])
        finetune = self.kind == "finetune"
        return make_command(self.kind, DATA=data, BACKBONE=self.backbone if finetune else None,
                            FREEZE=self.freeze if finetune else None, EPOCHS=epochs, AUGMENT=augment,
                            TRAIN_ARGS=f'"{" ".join(flags)}"' if flags else None,
                            SEEDS=f'"{self.seed}"' if self.seed else None)

    def _train_args(self) -> list[str]:
        """The flags that make passes in TRAIN_ARGS."""
        if self.kind == "finetune":
            flags = ["--image-size", str(self.image_size)] if self.image_size else []
            flags += ["--cached-views", str(self.cached_views)] if self.cached_views else []
        else:
            flags = [] if self.widths == POSTERNET_WIDTHS else ["--widths", ",".join(map(str, self.widths))]
        flags += ["--loss", self.loss] if self.loss != "bce" else []
        return flags + (["--mixup", f"{self.mixup:g}"] if self.mixup else [])

    def to_dict(self) -> dict:
        return {**asdict(self), "widths": list(self.widths)}

    @classmethod
    def of(cls, result: dict) -> RunSpec:
        """The spec a trained network's result records; results written before specs give theirs from their
        settings and config."""
        if "spec" in result:
            return cls(**{**result["spec"], "widths": tuple(result["spec"]["widths"])})
        config = result["config"]
        return cls(result["kind"], result.get("backbone"), result.get("freeze"),
                   result["image_size"] if result.get("image_size_given") else None, config.get("loss", "bce"),
                   config.get("mixup", 0.0), config.get("cached_views", 0),
                   union=result["union"]["dataset"] if "union" in result else None, seed=config.get("seed", 0))
