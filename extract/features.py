"""Embed every poster of a split with a frozen backbone and store the result in one HDF5 file.

The run is resumable: each finished batch is saved as its own .npy file in `<out>.parts/`, written
under a temporary name and renamed, so a killed run loses at most the batch in flight. When every
batch is there, the HDF5 file is written under a temporary name and renamed into place: a feature
file is complete or absent. Batches are the same whether or not a run was resumed, so the result
equals an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from extract.backbones import Backbone
from posters.data import DataError, Poster, PosterSet
from posters.files import atomic_write, write_text_atomic
from posters.images import SkippingImages, eval_transform
from posters.split import PARTS, Split, label_matrix, split_posters

FORMAT_VERSION = 1


def code_version() -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def choose_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for `precision` (auto, fp32, bf16, fp16); None means plain fp32."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        # bf16 only pays on CPUs with native bf16 units; elsewhere it is emulated and slower.
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@dataclass
class Features:
    """A feature file in memory: rows are posters, in split order (train, val, test)."""
    ids: np.ndarray
    parts: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    genres: list[str]
    attrs: dict

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self.parts == name
        return self.X[rows], self.Y[rows]

    def fingerprint(self) -> dict:
        """What a model fitted on these features depends on."""
        keys = ("backbone", "weights_sha256", "image_size", "preprocessing", "tta")
        return {**{k: self.attrs[k] for k in keys}, "genres": self.genres}


def load_features(path: Path | str) -> Features:
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
            genres = json.loads(attrs["genres"])
            return Features(f["ids"].asstr()[:], f["parts"].asstr()[:], f["embeddings"][:],
                            f["labels"][:], genres, attrs)
    except FileNotFoundError:
        raise DataError(f"{path}: feature file not found (run `make features` first)") from None
    except (OSError, KeyError) as e:
        raise DataError(f"{path}: not a complete feature file ({e}); delete it and run `make features`") \
            from None


def _batches(n: int, batch_size: int) -> list[list[int]]:
    return [list(range(start, min(start + batch_size, n))) for start in range(0, n, batch_size)]


def embed(model: torch.nn.Module, images: torch.Tensor, tta: bool, dtype: torch.dtype | None) -> np.ndarray:
    with torch.inference_mode(), torch.autocast(images.device.type, dtype=dtype, enabled=dtype is not None):
        out = model(images).float()
        if tta:
            out = (out + model(images.flip(3)).float()) / 2
    return out.cpu().numpy()


def extract(poster_set: PosterSet, split: Split, backbone: Backbone, out: Path | str, batch_size: int | None = None,
            tta: bool = False, precision: str = "auto", workers: int | None = None) -> Path:
    """Write the feature file `out` (resuming a killed run) and return its path."""
    out = Path(out)
    posters = [p for part in split_posters(poster_set, split).values() for p in part]
    ids = [p.id for p in posters]
    device = choose_device()
    dtype = autocast_dtype(device, precision)
    # Measured on a 2-core CPU: small batches stay in cache and run fastest (see `make bench`).
    batch_size = batch_size or (64 if device.type == "cuda" else 8)
    config = {
        "format_version": FORMAT_VERSION, "dataset": split.dataset, "backbone": backbone.name,
        "weights_sha256": backbone.weights_sha256, "weights_source": backbone.weights_source,
        "image_size": backbone.image_size,
        "preprocessing": f"RGB, squash to {backbone.image_size}x{backbone.image_size}, "
                         f"normalise mean={backbone.mean} std={backbone.std}",
        "tta": "hflip-mean" if tta else "none", "precision": str(dtype or torch.float32),
        "batch_size": batch_size, "genres": json.dumps(split.genres),
        "split": json.dumps({"seed": split.seed, "fractions": split.fractions, "min_count": split.min_count,
                             "sizes": {p: len(split.parts[p]) for p in PARTS}}),
        "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
    }
    if out.exists() and _same_config(out, config):
        print(f"{out} is complete and up to date")
        return out

    parts_dir = out.with_name(out.name + ".parts")
    manifest = parts_dir / "config.json"
    if parts_dir.exists() and (not manifest.exists() or json.loads(manifest.read_text()) != config):
        shutil.rmtree(parts_dir)  # leftovers of a run with other settings
    parts_dir.mkdir(parents=True, exist_ok=True)
    if not manifest.exists():
        write_text_atomic(manifest, json.dumps(config))

    batches = _batches(len(posters), batch_size)
    todo = [b for b, _ in enumerate(batches) if not (parts_dir / f"{b:06d}.npy").exists()]
    model = backbone.model.to(device, memory_format=torch.channels_last)
    dataset = SkippingImages([p.image for p in posters], eval_transform(backbone.image_size, backbone.mean,
                                                                         backbone.std), backbone.image_size)
    # Decoding small posters is cheap: leave most cores to the model.
    workers = max(1, min(4, (os.cpu_count() or 1) // 2)) if workers is None else workers
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=[batches[b] for b in todo], num_workers=workers,
                                         pin_memory=device.type == "cuda")
    start, done_now = time.perf_counter(), 0
    progress = tqdm(total=len(posters), initial=len(posters) - sum(len(batches[b]) for b in todo),
                    unit="poster", desc=f"{backbone.name} {split.dataset}")
    with progress:
        for b, (images, errors) in zip(todo, loader):
            images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
            embeddings = embed(model, images, tta, dtype)
            embeddings[[bool(e) for e in errors]] = np.nan  # unreadable posters, dropped below
            if any(errors):  # written before the batch file, whose presence marks the batch done
                reasons = {row: error for row, error in zip(batches[b], errors) if error}
                write_text_atomic(parts_dir / f"{b:06d}.errors.json", json.dumps(reasons))
            with atomic_write(parts_dir / f"{b:06d}.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, embeddings)
            progress.update(len(errors))
            done_now += len(errors)
            for error in filter(None, errors):
                tqdm.write(f"skipped: {error}")
    seconds = time.perf_counter() - start

    embeddings = np.concatenate([np.load(parts_dir / f"{b:06d}.npy") for b in range(len(batches))])
    readable = ~np.isnan(embeddings).any(axis=1)
    if not readable.any():
        raise DataError(f"none of the {len(posters)} posters of {split.dataset} could be read")
    reasons = {int(row): error for path in parts_dir.glob("*.errors.json")
               for row, error in json.loads(path.read_text()).items()}
    skipped = [(posters[row], reasons.get(row, "unreadable")) for row in np.flatnonzero(~readable)]
    _list_skipped(out, skipped)
    labels = label_matrix([p.genres for p in posters], split.genres)
    part_names = [part for part in PARTS for _ in split.parts[part]]
    _write_h5(out, [i for i, ok in zip(ids, readable) if ok], [p for p, ok in zip(part_names, readable) if ok],
              embeddings[readable], labels[readable],
              {**config, "code_version": code_version(), "data": str(poster_set.root), "skipped": len(skipped)})
    shutil.rmtree(parts_dir)
    if done_now:
        print(f"{done_now} posters in {seconds:.1f} s: {done_now / seconds:.1f} posters/s "
              f"({backbone.name}, {device.type}, {config['precision']}, batch {batch_size}, {workers} workers)")
    if skipped:
        print(f"{len(skipped)} unreadable posters skipped, listed in {out.with_suffix('.skipped.csv')}")
    return out


def _list_skipped(out: Path, skipped: list[tuple[Poster, str]]) -> None:
    """Write <out>.skipped.csv (id, image, reason) for unreadable posters; remove a stale one if none."""
    path = out.with_suffix(".skipped.csv")
    if not skipped:
        path.unlink(missing_ok=True)
        return
    with atomic_write(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "image", "reason"])
        writer.writerows([poster.id, str(poster.image), reason] for poster, reason in skipped)


def _same_config(path: Path, config: dict) -> bool:
    with contextlib.suppress(OSError, KeyError):
        with h5py.File(path, "r") as f:
            return all(f.attrs[k] == v for k, v in config.items())
    return False


def _write_h5(out: Path, ids: list[str], parts: list[str], embeddings: np.ndarray, labels: np.ndarray,
              attrs: dict) -> None:
    # Built in memory, then written in one go: a failed write (a full disk) is then a plain OSError, and
    # HDF5 never holds a half-written file open.
    string, buffer = h5py.string_dtype(), io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_dataset("ids", data=np.array(ids, dtype=object), dtype=string)
        f.create_dataset("parts", data=np.array(parts, dtype=object), dtype=string)
        f.create_dataset("embeddings", data=embeddings.astype(np.float32),
                         chunks=(min(len(ids), 1024), embeddings.shape[1]))
        f.create_dataset("labels", data=labels, chunks=(min(len(ids), 1024), labels.shape[1]))
        f.attrs.update(attrs)
    with atomic_write(out) as tmp:
        tmp.write_bytes(buffer.getbuffer())
