"""Fine-tuning on cached activations (`--cached-views N`): the frozen stages run once per augmented view,
not once per epoch.

Everything up to --freeze is frozen, its BatchNorms included, so it maps a given augmented poster to the
same activations at every epoch. The cache holds them (the input of the first trainable module) for N
augmented views of each training poster and for the evaluation view of each validation poster: float16,
in `activations.h5` in the run folder, written a view at a time so that an interrupted run resumes.
Training then draws one view per poster per epoch and runs only the trainable top, forwards and
backwards. The saved network is the whole model, used like any other.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import h5py
import numpy as np
import torch
from torch import nn

from postergenre.core.errors import DataError
from postergenre.core.progress import progress
from postergenre.extract.backbones import state_sha256
from postergenre.posters.images import PosterImages

if TYPE_CHECKING:
    from postergenre.training.loop import Part

CACHE = "activations.h5"  # in the run folder
# The frozen stages still run in each step, on a zero image of this size, and their output is replaced.
PROBE_SIZE = 32


class _Captured(Exception):
    """Ends a forward pass once the first trainable module's input is known."""


def activations(model: nn.Module, boundary: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The input that `boundary` (the first trainable module) receives when `model` runs on `images`."""
    captured = []

    def capture(module, inputs):
        captured.append(inputs[0])
        raise _Captured

    handle = boundary.register_forward_pre_hook(capture)
    try:
        model(images)
    except _Captured:
        pass
    finally:
        handle.remove()
    return captured[0]


class FromActivations(nn.Module):
    """`model` run from its first trainable module on: cached activations in, logits out."""

    def __init__(self, model: nn.Module, boundary: nn.Module):
        super().__init__()
        self.model = model
        self.boundary = [boundary]  # a plain list: it is already one of the model's modules

    def forward(self, cached: torch.Tensor) -> torch.Tensor:
        probe = cached.new_zeros((len(cached), 3, PROBE_SIZE, PROBE_SIZE))
        handle = self.boundary[0].register_forward_pre_hook(lambda module, inputs: (cached, *inputs[1:]))
        try:
            return self.model(probe)
        finally:
            handle.remove()


class CachedViews(torch.utils.data.Dataset):
    """Items (activations, labels): for each poster, one of its views drawn from torch's generator, which
    each epoch seeds, so a resumed run draws the same views."""

    def __init__(self, views: torch.Tensor, labels: np.ndarray):
        self.views = views  # (views, posters, ...)
        self.labels = torch.as_tensor(labels, dtype=torch.float32)

    def __len__(self) -> int:
        return self.views.shape[1]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        view = int(torch.randint(len(self.views), ())) if len(self.views) > 1 else 0
        return self.views[view, i].float(), self.labels[i]


def _embed(model: nn.Module, boundary: nn.Module, dataset: PosterImages, out: h5py.Dataset, view: int,
           batch_size: int, workers: int, device: torch.device, desc: str) -> None:
    """Write the activations of every poster of `dataset` to out[view], in order."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                         generator=torch.Generator().manual_seed(torch.initial_seed()))
    start = 0
    with torch.inference_mode():
        for images, _ in progress(loader, desc=desc, unit="batch"):
            batch = activations(model, boundary, images.to(device, memory_format=torch.channels_last))
            out[view, start:start + len(batch)] = batch.float().cpu().numpy().astype(np.float16)
            start += len(batch)


def _checked_activations(model: nn.Module, boundary: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The activations of `images`; a backbone whose top does not run from them alone (a skip across the
    boundary, say) is refused."""
    with torch.inference_mode():
        whole = model(images)
        cached = activations(model, boundary, images)
        replayed = FromActivations(model, boundary)(cached)
    if not torch.allclose(whole, replayed, atol=1e-4, rtol=1e-4):
        raise DataError("--cached-views: this backbone's trainable stages do not run from the frozen stages' output "
                        "alone; fine-tune it without --cached-views")
    return cached


def _open(path: Path, key: str, shapes: dict[str, tuple[int, ...]]) -> h5py.File:
    """The cache at `path` if it was written for `key`; else a new, empty one."""
    try:
        cache = h5py.File(path, "a")
        if cache.attrs.get("key") == key:
            return cache
        cache.close()
    except OSError:  # unreadable, from an interrupted write of its header: start again
        pass
    path.unlink(missing_ok=True)
    cache = h5py.File(path, "w")
    cache.attrs.update(key=key, done=json.dumps([]))
    for name, shape in shapes.items():
        cache.create_dataset(name, shape, np.float16, chunks=(1, 1, *shape[2:]), maxshape=(None, *shape[1:]))
    return cache


def cached_inputs(model: nn.Module, train: Part, val: Part, train_tf: Callable, eval_tf: Callable, views: int,
                  seed: int, run_dir: Path, batch_size: int, workers: int,
                  device: torch.device) -> tuple[nn.Module, CachedViews, CachedViews]:
    """(the model run from cached activations, the training views, the validation view), computing what
    the cache in run_dir lacks; it is then read whole into memory. `model` needs its `frozen` modules and
    its `first_trainable` one (finetune.model.FineTuned)."""
    boundary = getattr(model, "first_trainable", None)
    if boundary is None:
        raise DataError("--cached-views needs frozen stages: fine-tune with --freeze <a stage>")
    model.eval()
    sample = PosterImages(train.paths[:2], eval_tf)
    images = torch.stack([sample[i][0] for i in range(len(sample))]).to(device, memory_format=torch.channels_last)
    shape = tuple(_checked_activations(model, boundary, images).shape[1:])
    key = json.dumps({"seed": seed, "train": [str(p) for p in train.paths], "val": [str(p) for p in val.paths],
                      "train_tf": repr(train_tf), "eval_tf": repr(eval_tf), "frozen": state_sha256(*model.frozen)})
    with _open(run_dir / CACHE, key, {"val": (1, len(val.paths), *shape),
                                      "train": (views, len(train.paths), *shape)}) as cache:
        if cache["train"].shape[0] < views:  # more views than before: the first ones stay valid
            cache["train"].resize(views, axis=0)
        done = json.loads(cache.attrs["done"])
        todo = [("val", 0, PosterImages(val.paths, eval_tf))] + [
            ("train", view, PosterImages(train.paths, train_tf)) for view in range(views)]
        for name, view, dataset in todo:
            if f"{name}{view}" in done:
                continue
            torch.manual_seed(seed * 1000 + view)  # the augmentation of each view
            _embed(model, boundary, dataset, cache[name], view, batch_size, workers, device,
                   f"caching {name} view {view + 1}")
            done.append(f"{name}{view}")
            cache.attrs["done"] = json.dumps(done)
        train_views, val_view = (torch.from_numpy(cache[name][:views]) for name in ("train", "val"))
    return FromActivations(model, boundary), CachedViews(train_views, train.labels), CachedViews(val_view, val.labels)
