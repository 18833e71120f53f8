"""Saved models, one file each, that `make predict` and `make serve` load: posters in, genre probabilities out.

- a head (`models/<dataset>-<backbone>-<head>.joblib`, from `make heads`): the backbone named in
  its fingerprint embeds the posters, then the head scores them;
- a network (`models/<dataset>-<model>.pt`, from `make finetune` / `make cnn`): the fine-tuned
  CNN or PosterNet, rebuilt from the settings saved beside its weights.
Each file also holds the genre vocabulary and the thresholds chosen on validation.
"""
from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import joblib
import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn
from tqdm import tqdm

from cnn.model import PosterNet
from extract.backbones import build_backbone
from extract.features import autocast_dtype, choose_device, embed
from finetune.model import FineTuned
from posters.data import DataError
from posters.files import atomic_write
from posters.images import SkippingImages, eval_transform
from training.loop import ImageSpec

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
    network: nn.Module  # images -> logits, or -> embeddings when a head follows
    head: BaseEstimator | None = None
    tta: bool = False
    batch_size: int = 8
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype | None = None

    @property
    def transform(self) -> Callable:
        return eval_transform(self.spec.size, self.spec.mean, self.spec.std)

    @torch.inference_mode()
    def predict_proba(self, images: torch.Tensor) -> np.ndarray:
        images = images.to(self.device, memory_format=torch.channels_last)
        if self.head is not None:
            return self.head.predict_proba(embed(self.network, images, self.tta, self.dtype))
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            logits = self.network(images)
        return torch.sigmoid(logits.float()).cpu().numpy()


def save_network(path: Path | str, model: nn.Module, kind: str, build: dict, genres: list[str], spec: ImageSpec,
                 thresholds: list[float], batch_size: int) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        torch.save({"kind": kind, "build": build, "genres": genres, "spec": asdict(spec), "thresholds": thresholds,
                    "batch_size": batch_size, "model": model.state_dict()}, tmp)


def load_model(path: Path | str, weights: str | None = None, precision: str = "auto") -> Predictor:
    """The model saved at `path`; `weights` is the backbone's local state_dict file, for a resnet50 head offline."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: saved model not found (make heads, make finetune or make cnn write them "
                        f"to models/)")
    device = choose_device()
    dtype = autocast_dtype(device, precision)
    if path.suffix == ".joblib":
        saved = joblib.load(path)
        fingerprint = saved["fingerprint"]
        backbone = build_backbone(fingerprint["backbone"], weights)
        if backbone.weights_sha256 != fingerprint["weights_sha256"]:
            raise DataError(f"{path}: fitted on {fingerprint['backbone']} features from other weights "
                            f"(sha256 {fingerprint['weights_sha256'][:12]}, these are {backbone.weights_sha256[:12]})")
        network = backbone.model
        spec, head = ImageSpec(backbone.image_size, backbone.mean, backbone.std), saved["estimator"]
        tta = fingerprint["tta"] != "none"
    else:
        try:
            saved = torch.load(path, map_location="cpu", weights_only=False)
            network = NETWORKS[saved["kind"]](saved["build"], len(saved["genres"]))
            network.load_state_dict(saved["model"])
        except (RuntimeError, KeyError, TypeError, EOFError, pickle.UnpicklingError) as e:
            raise DataError(f"{path}: not a saved network ({str(e).splitlines()[0]})") from None
        spec, head, tta = ImageSpec(**saved["spec"]), None, False
    network = network.to(device, memory_format=torch.channels_last).eval()
    return Predictor(path.stem, saved["genres"], np.asarray(saved["thresholds"]), spec, network, head, tta,
                     saved["batch_size"], device, dtype)


def predict_files(predictor: Predictor, paths: list[Path], workers: int = 1) -> tuple[np.ndarray, dict[int, str]]:
    """Probabilities (posters, genres) for the readable posters, and {index: reason} for the others."""
    dataset = SkippingImages(paths, predictor.transform, predictor.spec.size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=predictor.batch_size, num_workers=workers)
    scores, errors = [], {}
    with tqdm(total=len(paths), unit="poster", desc=predictor.name) as progress:
        for start, (images, reasons) in zip(range(0, len(paths), predictor.batch_size), loader):
            ok = [not reason for reason in reasons]
            errors.update({start + i: reason for i, reason in enumerate(reasons) if reason})
            if any(ok):
                scores.append(predictor.predict_proba(images[ok]))
            progress.update(len(reasons))
    probabilities = np.concatenate(scores) if scores else np.zeros((0, len(predictor.genres)), np.float32)
    return probabilities, errors
