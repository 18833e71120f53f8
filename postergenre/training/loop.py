"""The one training loop for every end-to-end model (finetune/ and cnn/).

A model maps normalised images to one logit per genre. Each epoch re-seeds every generator from
(seed, epoch), so a run resumed from an epoch checkpoint retraces the uninterrupted run. Under
torchrun the loop uses DistributedDataParallel: a distributed sampler, validation scores gathered
from every rank, and checkpoints written by rank 0.
"""
from __future__ import annotations

import csv
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from timm.loss import AsymmetricLossMultiLabel
from torch.nn.parallel import DistributedDataParallel
from torchvision.utils import make_grid, save_image

from postergenre.core.device import Distributed, autocast_dtype, setup_distributed
from postergenre.core.errors import DataError
from postergenre.core.files import atomic_write
from postergenre.core.progress import progress
from postergenre.core.runtime import PRECISIONS
from postergenre.evaluation.metrics import macro_map
from postergenre.modelfiles import ModelFileError
from postergenre.modelfiles.networks import load_weights, read_checkpoint, save_checkpoint, save_network
from postergenre.posters.images import AUGMENTATIONS, ImageSpec, PosterImages, eval_transform, train_transform
from postergenre.training.cached import CachedViews, cached_inputs

SCHEDULES, LOSSES = ("cosine", "onecycle"), ("bce", "asl")
LAST, BEST = "last.pt", "best.safetensors"  # in the run folder: the checkpoint to resume from, the best weights


def _setting(default, help: str, choices: tuple[str, ...] | None = None, minimum: float | None = None):
    return field(default=default, metadata={"help": help, "choices": choices,
                                            **({"minimum": minimum} if minimum is not None else {})})


@dataclass
class TrainConfig:
    """Every training setting; each is a flag of `python -m postergenre.finetune` and `python -m postergenre.cnn`
    (core.cli.add_settings)."""
    epochs: int = _setting(8, "at most this many epochs (early stopping on validation mAP)", minimum=1)
    batch_size: int = _setting(32, "posters per step, across all processes", minimum=1)
    lr: float = _setting(1e-3, "learning rate of the new head, or of the whole model when trained from scratch")
    body_lr: float = _setting(1e-4, "learning rate of the pretrained parameters")
    weight_decay: float = _setting(0.05, "AdamW weight decay (none on norms and biases)")
    warmup_epochs: float = _setting(1.0, "epochs of linear learning-rate warm-up")
    schedule: str = _setting("cosine", "learning-rate schedule after the warm-up", SCHEDULES)
    loss: str = _setting("bce", "bce: binary cross-entropy; asl: asymmetric loss (Ridnik et al. 2021)", LOSSES)
    pos_weight: bool = _setting(False, "weigh each genre's positives by its negatives/positives (capped at 10)")
    augment: str = _setting("light", "augmentation preset", AUGMENTATIONS)
    mixup: float = _setting(0.0, "alpha of mixup's Beta(alpha, alpha) weight; 0: no mixup")
    precision: str = _setting("auto", "auto: fp16 on CUDA, bf16 on CPUs that have it, else fp32", PRECISIONS)
    patience: int = _setting(3, "epochs without a better validation mAP before stopping", minimum=1)
    seed: int = _setting(0, "seeds the initial weights, the order of posters and the augmentation")
    workers: int | None = _setting(None, "image decoding processes (default: half the cores, at most 4)", minimum=0)
    cached_views: int = _setting(0, "fine-tuning: train the stages after --freeze on the frozen stages' activations, "
                                    "cached for this many augmented views of each poster (training/cached.py); 0: off")


def mixup(images: torch.Tensor, labels: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each poster blended with another of the batch, genre vectors alike (Zhang et al. 2018).

    Draws from torch's global generator, which each epoch seeds, so a resumed run mixes the same.
    """
    weight = float(torch.distributions.Beta(alpha, alpha).sample())
    partner = torch.randperm(len(images), device=images.device)
    return (weight * images + (1 - weight) * images[partner],
            weight * labels + (1 - weight) * labels[partner])


@dataclass
class Part:
    """One part of the split, ready for a DataLoader."""
    paths: list[Path]
    labels: np.ndarray


def param_groups(groups: dict[str, tuple[list[tuple[str, nn.Parameter]], float]], weight_decay: float) -> list[dict]:
    """AdamW groups: each named group at its own learning rate, no weight decay on norms and biases."""
    out = []
    for name, (named_params, lr) in groups.items():
        trainable = [p for _, p in named_params if p.requires_grad]
        decay = [p for p in trainable if p.ndim > 1]
        no_decay = [p for p in trainable if p.ndim <= 1]
        out += [{"name": name, "params": decay, "lr": lr, "weight_decay": weight_decay},
                {"name": f"{name} (norms, biases)", "params": no_decay, "lr": lr, "weight_decay": 0.0}]
    return [g for g in out if g["params"]]


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total,
            pct_start=min(0.5, cfg.warmup_epochs / cfg.epochs))
    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    schedulers = torch.optim.lr_scheduler  # linear warm-up from 1/warmup of the rate, then cosine decay to zero
    return schedulers.SequentialLR(optimizer, [
        schedulers.LinearLR(optimizer, start_factor=1 / warmup, total_iters=max(1, warmup - 1)),
        schedulers.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup))], milestones=[warmup])


class KnownLabelsBCE(nn.Module):
    """Binary cross-entropy averaged over the known labels: a -1 (a genre that a poster's data set does
    not label, posters/union.py) adds nothing. With every label known it is BCEWithLogitsLoss."""

    def __init__(self, pos_weight: torch.Tensor | None = None):
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        known = targets >= 0
        losses = nn.functional.binary_cross_entropy_with_logits(logits, targets.clamp(min=0), reduction="none",
                                                                pos_weight=self.pos_weight)
        return (losses * known).sum() / known.sum().clamp(min=1)


def _loss(cfg: TrainConfig, train_labels: np.ndarray, device: torch.device) -> nn.Module:
    if cfg.loss == "asl":  # ASL (Ridnik et al. 2021): hard negatives weighted up, easy ones shifted away
        return AsymmetricLossMultiLabel(gamma_neg=4, gamma_pos=0, clip=0.05, eps=1e-8)
    pos_weight = None
    if cfg.pos_weight:
        positives = (train_labels == 1).sum(axis=0).clip(min=1)
        negatives = (train_labels == 0).sum(axis=0)
        pos_weight = torch.tensor((negatives / positives).clip(max=10), dtype=torch.float32, device=device)
    return KnownLabelsBCE(pos_weight)


def _seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _rng_states() -> dict:
    """Every generator's state as tensors and plain values, so the checkpoint loads with weights_only=True."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [name, keys.tolist(), position, has_gauss, gauss],
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _restore_rng(states: dict) -> None:
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])


def load_checkpoint(path: Path, model: nn.Module, device: torch.device | str = "cpu") -> dict:
    """Load the checkpoint at `path` into `model` and return it; another architecture's is refused in one line."""
    saved = read_checkpoint(path, device)
    try:
        load_weights(model, saved["model"], path)
    except ModelFileError as e:
        raise ModelFileError(f"{e}; delete {path.parent} or train into another --runs-dir") from None
    return saved


def _write_log(history: list[dict], path: Path) -> None:
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def save_augmented_batch(part: Part, transform, spec: ImageSpec, path: Path, count: int = 16) -> None:
    """What the model sees: the first training posters through the augmentation, as one PNG grid."""
    dataset = PosterImages(part.paths[:count], transform)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    images = images * torch.tensor(spec.std).view(1, 3, 1, 1) + torch.tensor(spec.mean).view(1, 3, 1, 1)
    save_image(make_grid(images.clamp(0, 1), nrow=8, padding=2), path)


def to_device(inputs: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch of images (or of cached activations) on `device`, channels-last where it has channels."""
    return inputs.to(device, non_blocking=True, memory_format=torch.channels_last if inputs.ndim == 4
                     else torch.preserve_format)


@torch.inference_mode()
def predict(model: nn.Module, dataset: PosterImages | CachedViews, batch_size: int, device: torch.device,
            dtype: torch.dtype | None, env: Distributed = Distributed(), workers: int = 1) -> np.ndarray:
    """Sigmoid scores (posters, genres) of a dataset with labels; with several ranks each scores a shard and
    all get the whole."""
    n_genres = dataset.labels.shape[1]
    sampler = (torch.utils.data.distributed.DistributedSampler(dataset, shuffle=False)
               if env.world_size > 1 else None)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)
    model.eval()
    scores = []
    for images, _ in loader:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(to_device(images, device))
        scores.append(torch.sigmoid(logits.float()).cpu().numpy())
    scores = np.concatenate(scores) if scores else np.zeros((0, n_genres), np.float32)
    if env.world_size == 1:
        return scores
    shards = [None] * env.world_size
    dist.all_gather_object(shards, (list(iter(sampler)), scores))
    out = np.zeros((len(dataset), n_genres), dtype=np.float32)
    for indices, shard in shards:
        out[indices] = shard  # the padding a distributed sampler adds just rewrites a row
    return out


@dataclass
class _Run:
    """What a run trains with, and its checkpoint: weights, optimiser, schedule, loss scale and RNG states."""
    model: nn.Module
    wrapped: nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    device: torch.device
    dtype: torch.dtype | None

    def train_epoch(self, loader: torch.utils.data.DataLoader, mixup_alpha: float, bar: Callable) -> tuple[int, float]:
        """One pass over `loader`, shown by `bar(loader)` (a progress bar): (posters seen, summed loss)."""
        self.wrapped.train()
        seen, loss_sum = 0, 0.0
        batches = bar(loader)
        for images, labels in batches:
            images = to_device(images, self.device)
            labels = labels.to(self.device, non_blocking=True)
            if mixup_alpha > 0:
                images, labels = mixup(images, labels, mixup_alpha)
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                logits = self.wrapped(images)
            loss = self.criterion(logits.float(), labels)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            seen += len(images)
            loss_sum += loss.item() * len(images)
            batches.set_postfix(loss=f"{loss_sum / seen:.4f}")
        return seen, loss_sum

    def save(self, path: Path, state: dict, cfg: TrainConfig) -> None:
        save_checkpoint(path, {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                               "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                               "rng": _rng_states(), "state": state, "config": asdict(cfg)})

    def restore(self, path: Path) -> dict:
        """Load the checkpoint at `path` into everything; returns the run's state after its last epoch."""
        saved = load_checkpoint(path, self.model, self.device)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        _restore_rng(saved["rng"])
        return saved["state"]


def _epoch_loader(dataset: PosterImages, cfg: TrainConfig, epoch: int, env: Distributed, batch_size: int,
                  workers: int, device: torch.device) -> torch.utils.data.DataLoader:
    """This epoch's batches; every generator is seeded from (seed, epoch), so a resumed run draws the same."""
    generator = _seed_everything(cfg.seed * 1000 + epoch)
    if env.world_size > 1:
        sampler = torch.utils.data.distributed.DistributedSampler(dataset, seed=cfg.seed, drop_last=True)
        sampler.set_epoch(epoch)
    else:
        sampler = torch.utils.data.RandomSampler(dataset, generator=generator)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                       generator=generator, drop_last=True, pin_memory=device.type == "cuda")


def fit(model: nn.Module, groups: dict, train: Part, val: Part, spec: ImageSpec, cfg: TrainConfig,
        run_dir: Path | str, resume: bool = False) -> dict:
    """Train with early stopping on validation mAP; returns the run's state. Best weights: run_dir/BEST."""
    run_dir = Path(run_dir)
    train_tf = train_transform(cfg.augment, spec.size, spec.mean, spec.std)
    eval_tf = eval_transform(spec.size, spec.mean, spec.std)
    env, device = setup_distributed()
    if env.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    dtype = autocast_dtype(device, cfg.precision)
    workers = max(1, min(4, (os.cpu_count() or 1) // 2)) if cfg.workers is None else cfg.workers
    model = model.to(device, memory_format=torch.channels_last)
    per_rank_batch = max(1, cfg.batch_size // env.world_size)
    network, dataset, val_set, workers = _inputs(model, train, val, train_tf, eval_tf, cfg, env, run_dir,
                                                 per_rank_batch, workers, device)
    optimizer = torch.optim.AdamW(param_groups(groups, cfg.weight_decay))
    run = _Run(model, DistributedDataParallel(network) if env.world_size > 1 else network, optimizer,
               _scheduler(optimizer, cfg, math.ceil(len(dataset) / env.world_size / per_rank_batch)),
               torch.amp.GradScaler(device.type, enabled=dtype == torch.float16), _loss(cfg, train.labels, device),
               device, dtype)

    state = {"epoch": -1, "best_map": -1.0, "best_epoch": -1, "bad_epochs": 0, "history": []}
    if resume and (run_dir / LAST).exists():
        state = run.restore(run_dir / LAST)
        if env.main:
            print(f"resumed {run_dir} after epoch {state['epoch'] + 1}")
    elif env.main:
        save_augmented_batch(train, train_tf, spec, run_dir / "augmented-batch.png")

    for epoch in range(state["epoch"] + 1, cfg.epochs):
        if state["bad_epochs"] >= cfg.patience:
            break
        loader = _epoch_loader(dataset, cfg, epoch, env, per_rank_batch, workers, device)
        start = time.perf_counter()
        seen, loss_sum = run.train_epoch(loader, cfg.mixup, lambda batches: progress(
            batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", quiet=not env.main))
        seconds = time.perf_counter() - start
        val_scores = predict(network, val_set, per_rank_batch * 2, device, dtype, env, workers)
        val_map = macro_map(val.labels, val_scores)
        state["history"].append({"epoch": epoch + 1, "train_loss": round(loss_sum / max(seen, 1), 5),
                                 "val_loss": round(_loss_of(val_scores, val.labels), 5), "val_mAP": round(val_map, 5),
                                 "lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds, 1),
                                 "posters_per_s": round(seen * env.world_size / seconds, 2)})
        improved = val_map > state["best_map"]
        state.update(epoch=epoch, bad_epochs=0 if improved else state["bad_epochs"] + 1)
        if improved:
            state.update(best_map=val_map, best_epoch=epoch + 1)
        if env.main:
            if improved:
                save_network(run_dir / BEST, model, {"epoch": epoch + 1, "val_mAP": val_map})
            run.save(run_dir / LAST, state, cfg)
            _write_log(state["history"], run_dir / "log.csv")
            print(f"epoch {epoch + 1}: train loss {state['history'][-1]['train_loss']:.4f}, val mAP {val_map:.4f}"
                  f"{' (best)' if improved else ''}, {state['history'][-1]['posters_per_s']} posters/s")
    if env.world_size > 1:
        dist.barrier()
    return state


def _inputs(model: nn.Module, train: Part, val: Part, train_tf: Callable, eval_tf: Callable, cfg: TrainConfig,
            env: Distributed, run_dir: Path, per_rank_batch: int, workers: int,
            device: torch.device) -> tuple[nn.Module, torch.utils.data.Dataset, torch.utils.data.Dataset, int]:
    """What the epochs feed: the network that trains, the training and validation sets, and the loader workers.
    With --cached-views, the frozen stages' activations of that many augmented views (training/cached.py), in
    memory, and the trainable top; else the posters' images and the whole model."""
    if not cfg.cached_views:
        return (model, PosterImages(train.paths, train_tf, train.labels), PosterImages(val.paths, eval_tf, val.labels),
                workers)
    if env.world_size > 1 or cfg.mixup:
        raise DataError("--cached-views runs in one process (its cache is written once, by one) and without "
                        "mixup (a blend of activations is not the activations of a blend)")
    network, dataset, val_set = cached_inputs(model, train, val, train_tf, eval_tf, cfg.cached_views, cfg.seed,
                                              run_dir, per_rank_batch, workers, device)
    return network, dataset, val_set, 0  # the activations are in memory already: no workers


def _loss_of(scores: np.ndarray, labels: np.ndarray) -> float:
    """The binary cross-entropy of probabilities `scores` against 0/1 `labels`, as training's loss reports it."""
    return float(nn.functional.binary_cross_entropy(torch.from_numpy(scores).clamp(1e-6, 1 - 1e-6),
                                                    torch.from_numpy(labels).float()))
