"""Saved models, one file each, that `make predict` and `make serve` load: posters in, genre probabilities out.

- a head (`models/<dataset>-<backbone>-<head>.skops`, from `make heads`): the backbone named in
  its fingerprint embeds the posters, then the head scores them;
- a network (`models/<dataset>-<model>.safetensors`, from `make finetune` / `make cnn`): the
  fine-tuned CNN or PosterNet, rebuilt from the settings saved beside its weights;
- an ensemble (`models/<dataset>-final.json`, from `make final-ensemble`): its members, each a head or a
  network, loaded as above; their probabilities averaged as the evaluated ensemble averaged them.
Each file also holds the genre vocabulary and the thresholds chosen on validation. modelfiles reads
them without running code from the file; the settings are checked before anything is built from them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from postergenre.cnn.model import PosterNet
from postergenre.core.device import autocast_dtype, choose_device
from postergenre.core.progress import progress
from postergenre.core.runtime import INFERENCE_PRECISION
from postergenre.ensemble.combine import MAX_ROUNDS, Combination
from postergenre.extract.backbones import build_backbone
from postergenre.extract.engines import Embedder, make_embedder
from postergenre.extract.features import embedding_fingerprint, fingerprint_differences
from postergenre.finetune.model import FineTuned
from postergenre.modelfiles import ENSEMBLE_SUFFIX, HEAD_SUFFIX, ModelFileError, read_ensemble
from postergenre.modelfiles.heads import read_head
from postergenre.modelfiles.networks import load_weights, read_network
from postergenre.modelfiles.settings import EnsembleSettings, HeadSettings, NetworkSettings, parse, timm_backbone
from postergenre.posters.images import ImageSpec, SkippingImages, eval_transform, pixels_transform

# How each kind of network is rebuilt from its saved settings, before its weights are loaded.
NETWORKS: dict[str, Callable[[dict, int], nn.Module]] = {
    "finetune": lambda build, n: FineTuned(build_backbone(build["backbone"], "random"), n, build["freeze"]),
    "cnn": lambda build, n: PosterNet(n, tuple(build["widths"])),
}


@dataclass
class Predictor:
    """A loaded model: `predict_proba` maps a batch of transformed posters to one probability per genre."""
    name: str
    genres: list[str]
    thresholds: np.ndarray
    spec: ImageSpec
    network: nn.Module | None = None  # a network: images -> logits
    head: BaseEstimator | None = None  # or a head, on the embeddings of
    embedder: Embedder | None = None  # its frozen backbone
    members: dict[str, Predictor] | None = None  # or an ensemble of other predictors,
    combination: Combination | None = None  # and how it averages them
    batch_size: int = 8
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype | None = None
    recall_thresholds: dict[str, float] | None = None  # a final head's (evaluation/recall.py)
    final: dict | None = None  # a final model's record of its refit on every labelled poster (make final)

    @property
    def transform(self) -> Callable:
        """A poster image -> what predict_proba takes: uint8 pixels for a head's Embedder, normalised for a network,
        and for an ensemble a tuple of what each member takes."""
        if self.members is not None:
            return _EachMember([member.transform for member in self.members.values()])
        if self.head is not None:
            return pixels_transform(self.spec.size)
        return eval_transform(self.spec.size, self.spec.mean, self.spec.std)

    @torch.inference_mode()
    def predict_proba(self, images: torch.Tensor | Sequence[torch.Tensor],
                      embedded: dict[int, np.ndarray] | None = None) -> np.ndarray:
        """Probabilities (posters, genres) of a batch of transformed posters (an ensemble: one batch per member).

        `embedded`: what each Embedder (by id) gave for this batch so far, so that an ensemble's heads on one
        backbone, which share its Embedder, run it once.
        """
        if self.members is not None:
            embedded = {}
            return self.combination({name: member.predict_proba(batch, embedded)
                                     for (name, member), batch in zip(self.members.items(), images)})
        if self.head is not None:
            embedded = {} if embedded is None else embedded
            if id(self.embedder) not in embedded:
                embedded[id(self.embedder)] = self.embedder(images)
            return self.head.predict_proba(embedded[id(self.embedder)])
        images = images.to(self.device, memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            logits = self.network(images)
        return torch.sigmoid(logits.float()).cpu().numpy()


    def predict_images(self, images: list) -> np.ndarray:
        """Probabilities (images, genres) of decoded RGB posters (PIL images): the route every way in shares with
        the light path (predict.arguments.Predicts)."""
        return self.predict_proba(torch.utils.data.default_collate([self.transform(image) for image in images]))


class _EachMember:
    """One poster -> one transformed copy per ensemble member (a class, not a lambda, so loaders can pickle it)."""

    def __init__(self, transforms: list[Callable]):
        self.transforms = transforms

    def __call__(self, image) -> tuple[torch.Tensor, ...]:
        return tuple(transform(image) for transform in self.transforms)


def rows(batch: torch.Tensor | Sequence[torch.Tensor], keep) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """The rows `keep` of a batch as predict_proba takes it (an ensemble's: of each member's batch)."""
    return batch[keep] if isinstance(batch, torch.Tensor) else tuple(member[keep] for member in batch)


def load_model(path: Path | str, weights: str | None = None, precision: str = INFERENCE_PRECISION,
               engine: str = "auto", embedders: dict[str, Embedder] | None = None,
               trust_timm: bool = False) -> Predictor:
    """The model saved at `path`; `weights` is the backbone's local weights file, for a resnet50 head offline.

    A head's backbone runs on `engine` (see extract.engines); a network always runs in PyTorch. `embedders`, by
    embedding fingerprint, are reused and added to: heads loaded with the same dict share one per backbone.
    A model on a timm backbone is built only with `trust_timm` (or POSTERGENRE_TRUST_TIMM=1): its file names any
    of timm's models, which may be huge or download weights, where the built-in backbones are known.
    """
    path = Path(path)
    device = choose_device()
    dtype = autocast_dtype(device, precision)
    if path.suffix == ENSEMBLE_SUFFIX:
        return _load_ensemble(path, weights, precision, engine, trust_timm)
    if path.suffix == HEAD_SUFFIX:
        head, raw = read_head(path)
        settings = parse(HeadSettings, raw, path)
        if len(getattr(head, "classes_", ())) != len(settings.genres):
            raise ModelFileError(f"{path}: not a model this version saved (its head scores other genres than its "
                                 f"{len(settings.genres)})")
        _refuse_untrusted_timm(path, settings, trust_timm)
        tta = settings.fingerprint.tta != "none"
        backbone = build_backbone(settings.fingerprint.backbone, weights)
        ours = embedding_fingerprint(backbone, tta)
        differences = fingerprint_differences(settings.fingerprint.model_dump(), ours)
        if differences:
            raise ModelFileError(f"{path}: fitted on other features than this backbone gives ({differences}); "
                                 f"pass the backbone's weights with --weights, or refit the head")
        embedders = {} if embedders is None else embedders
        key = json.dumps(ours, sort_keys=True)
        if key not in embedders:
            embedders[key] = make_embedder(backbone, tta, engine, precision)
        return Predictor(path.stem, list(settings.genres), np.asarray(settings.thresholds, dtype=np.float64),
                         ImageSpec(backbone.image_size, backbone.mean, backbone.std), head=head,
                         embedder=embedders[key], batch_size=settings.batch_size,
                         recall_thresholds=settings.recall_thresholds, final=settings.final)
    state, raw = read_network(path)
    settings = parse(NetworkSettings, raw, path)
    _refuse_untrusted_timm(path, settings, trust_timm)
    try:
        network = NETWORKS[settings.kind](settings.build.model_dump(), len(settings.genres))
    except ValueError as e:  # a stage name the backbone does not have
        raise ModelFileError(f"{path}: not a model this version saved ({e})") from None
    load_weights(network, state, path)
    network = network.to(device, memory_format=torch.channels_last).eval()
    return Predictor(path.stem, list(settings.genres), np.asarray(settings.thresholds, dtype=np.float64),
                     ImageSpec(**settings.spec.model_dump()), network, batch_size=settings.batch_size, device=device,
                     dtype=dtype, final=settings.final)


def _refuse_untrusted_timm(path: Path, settings: object, trust_timm: bool) -> None:
    untrusted = timm_backbone(settings)
    if untrusted and not (trust_timm or os.environ.get("POSTERGENRE_TRUST_TIMM") == "1"):
        raise ModelFileError(f"{path}: built on {untrusted}, not a built-in backbone; pass --trust-timm (or set "
                             f"POSTERGENRE_TRUST_TIMM=1) to build it, for a file you trust")


def _load_ensemble(path: Path, weights: str | None, precision: str, engine: str, trust_timm: bool) -> Predictor:
    files, raw = read_ensemble(path)
    settings = parse(EnsembleSettings, raw, path)
    genres = list(settings.genres)
    embedders: dict[str, Embedder] = {}  # heads on one backbone share its Embedder, which then runs once a batch
    members = {name: load_model(file, weights, precision, engine, embedders, trust_timm)
               for name, file in files.items()}
    if any(member.genres != genres for member in members.values()):
        raise ModelFileError(f"{path}: its members were trained on other genre lists than the ensemble's")
    try:
        combination = Combination.from_dict(settings.combination)
        shapes_fit = all(np.isfinite(a).all() and a.shape == (len(genres),) for scale in
                         (*combination.scales.values(), combination.own) for a in (scale.mean, scale.std))
        weights_fit = all(isinstance(w, int) and 0 < w <= MAX_ROUNDS for w in combination.weights.values())
    except (KeyError, TypeError, ValueError, AttributeError):
        shapes_fit = weights_fit = False
    if not (shapes_fit and weights_fit and combination.weights.keys() == combination.scales.keys() == files.keys()):
        raise ModelFileError(f"{path}: not a model this version saved (combination)")
    first = next(iter(members.values()))
    return Predictor(path.stem, genres, np.asarray(settings.thresholds, dtype=np.float64), first.spec,
                     members=members, combination=combination,
                     batch_size=min(settings.batch_size, *(m.batch_size for m in members.values())),
                     final=settings.final)


def predict_files(predictor: Predictor, paths: list[Path], workers: int = 1) -> tuple[np.ndarray, dict[int, str]]:
    """Probabilities (posters, genres) for the readable posters, and {index: reason} for the others."""
    dataset = SkippingImages(paths, predictor.transform, predictor.spec.size)
    # A worker decodes the next batch while the model runs this one; with one batch there is nothing to overlap,
    # only a process to start, which takes seconds where processes are spawned (docs/speed.md, "Behind the code")
    workers = workers if len(paths) > predictor.batch_size else 0
    loader = torch.utils.data.DataLoader(dataset, batch_size=predictor.batch_size, num_workers=workers)
    scores, errors = [], {}
    with progress(total=len(paths), unit="poster", desc=predictor.name) as bar:
        for start, (images, reasons) in zip(range(0, len(paths), predictor.batch_size), loader):
            ok = [not reason for reason in reasons]
            errors.update({start + i: reason for i, reason in enumerate(reasons) if reason})
            if any(ok):
                scores.append(predictor.predict_proba(rows(images, ok)))
            bar.update(len(reasons))
    probabilities = np.concatenate(scores) if scores else np.zeros((0, len(predictor.genres)), np.float32)
    return probabilities, errors
