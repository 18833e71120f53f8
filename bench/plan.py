"""What a bench runs: the data sets, the settings of every model, and the two scopes (HOUR, the default; FULL),
with the work folder's paths and the step names that bench.comparison and bench.report share."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from postergenre.core import workspace

DATASETS = ("anime-posters", "anilist-covers", "movie-posters")
# Multi-scale pooling raised the heads' validation mAP on all three data sets (docs/ablations.md).
BACKBONE = "efficientnet_lite0_multiscale"
# Lite2 features raised AniList's validation mAP before, at half the speed; with ONNX Runtime the bench can afford
# to extract both and let each data set's validation mAP (of the logistic head) choose the one all heads use.
BACKBONE_CHOICES = (BACKBONE, "efficientnet_lite2_multiscale")
# Chosen to keep the whole bench near an hour on a 2-core CPU (docs/results.md).
FINETUNE = {"backbone": "efficientnet_lite0", "freeze": "stage4", "image_size": 160,
            "epochs": {"anime-posters": 6, "anilist-covers": 6, "movie-posters": 3}}
# Fine-tuning on cached activations (training/cached.py) at the backbone's own 224 px, for FINETUNE's epochs, with
# as many views as keep its wall time near FINETUNE's (docs/speed.md, "Behind the code"); validation then says
# which of the two the ensemble takes. Frozen up to stage5, which beat stage6 on validation
# (docs/ablations.md).
CACHED_FINETUNE = {"backbone": "efficientnet_lite0", "freeze": "stage5",
                   "views": {"anime-posters": 2, "anilist-covers": 2, "movie-posters": 1}}
CNN_EPOCHS = {"anime-posters": 8, "anilist-covers": 8, "movie-posters": 4}
# Trained with the other anime set too (heads/union.py): anime posters and AniList covers are both anime art.
UNIONS = {"anime-posters": "anilist-covers", "anilist-covers": "anime-posters"}
# Heads cross-validated over the training and validation parts (5 folds, 1 repeat); their out-of-fold scores
# also choose the ensemble's members.
CV = (5, 1)
HEAD_NAMES = ("logistic", "mlknn", "mlp")


@dataclass(frozen=True)
class Scope:
    """What one bench runs beyond the three heads, the union logistic head, fine-tuning on cached activations,
    PosterNet, the ensemble and the final head, which every bench runs."""
    backbones: tuple[str, ...]  # each extracted; the logistic head's validation mAP chooses the one all heads use
    cv_heads: dict[str, tuple[str, ...]]  # data set -> the heads cross-validated
    on_images: bool  # fine-tuning on images too, alone and with the other anime set
    final_ensemble: bool  # refitting the ensemble, networks and all
    posternet: tuple[str, ...]  # the data sets PosterNet is trained on


# `make bench`: within an hour on a 2-core CPU (docs/results.md has each step's wall time). Of the movie posters'
# 6,150 it cross-validates ML-kNN only, and leaves out PosterNet, the slowest and weakest model there
# (docs/speed.md, "Behind the code").
HOUR = Scope(backbones=(BACKBONE,), on_images=False, final_ensemble=False, posternet=DATASETS[:2],
             cv_heads={"anime-posters": HEAD_NAMES, "anilist-covers": HEAD_NAMES, "movie-posters": ("mlknn",)})
# `make bench FULL=1`: everything, resumably.
FULL = Scope(backbones=BACKBONE_CHOICES, on_images=True, final_ensemble=True, posternet=DATASETS,
             cv_heads={name: HEAD_NAMES for name in DATASETS})
# Trained networks run once per seed; one more seed costs its seed-0 step's wall time again.
SEEDS = {name: (0,) for name in DATASETS}


def split_path(work: Path, dataset: str) -> Path:
    return workspace.split_path(work / "features", dataset)


def features_path(work: Path, dataset: str, backbone: str) -> Path:
    return workspace.features_path(work / "features", dataset, backbone)


def features_step(dataset: str, backbone: str) -> str:
    return f"{dataset} features {backbone}"


