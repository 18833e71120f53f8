"""Embed every poster of a split with a frozen backbone and store the result in one HDF5 file.

The run is resumable: each finished batch is saved as its own .npy file in `<out>.parts/`, written
under a temporary name and renamed, so a killed run loses at most the batch in flight. When every
batch is there, the HDF5 file is written under a temporary name and renamed into place: a feature
file is complete or absent. Batches are the same whether or not a run was resumed, so the result
equals an uninterrupted run.

A feature file knows its inputs: the data folder's resolved path and, per poster, the sha256 of its
image. A rerun reuses the embeddings of unchanged posters and embeds only new or changed ones.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import h5py
import numpy as np
import torch

from postergenre.core.device import Distributed, setup_distributed
from postergenre.core.errors import DataError
from postergenre.core.files import atomic_write, write_csv_atomic, write_text_atomic
from postergenre.core.progress import progress
from postergenre.core.runtime import INFERENCE_PRECISION
from postergenre.core.workspace import file_sha256
from postergenre.extract.backbones import Backbone
from postergenre.extract.engines import Embedder, engine_dtype, make_embedder, resolve_engine
from postergenre.posters.data import Poster, PosterSet, read_posters
from postergenre.posters.images import SkippingImages, pixels_transform
from postergenre.posters.split import PARTS, Split, current_fingerprint, label_matrix, split_posters

FORMAT_VERSION = 2  # 2: each poster's image sha256, so changed images are re-embedded
# Decoding in this process between two batches pushes the engine's weights out of the CPU caches; decoding this
# many bytes of pixels first, then running their batches back to back, keeps them there (measured in
# docs/speed.md).
DECODE_AHEAD_BYTES = 40 * 2**20


def code_version() -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass
class Features:
    """A feature file in memory: rows are posters, in split order (train, val, test)."""
    ids: np.ndarray
    parts: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    genres: list[str]
    attrs: dict
    groups: np.ndarray | None = None  # each poster's franchise group; cross-validation keeps a group in one fold

    def __post_init__(self) -> None:
        if self.groups is None:  # an ungrouped split, or a file from before groups: each poster is its own
            self.groups = self.ids

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self.parts == name
        return self.X[rows], self.Y[rows]

    def fingerprint(self) -> dict:
        """What a model fitted on these features depends on."""
        return {**{k: self.attrs[k] for k in FINGERPRINT_KEYS}, "genres": self.genres}


FINGERPRINT_KEYS = ("backbone", "weights_sha256", "image_size", "preprocessing", "tta")
MAX_FEATURE_BYTES = 2**33  # one array of a feature file: 1 million posters of 2,048 floats


def embedding_fingerprint(backbone: Backbone, tta: bool) -> dict:
    """What an embedding depends on, beside the image: `make features` records it, heads are checked against it."""
    return {"backbone": backbone.name, "weights_sha256": backbone.weights_sha256, "image_size": backbone.image_size,
            "preprocessing": f"RGB, squash to {backbone.image_size}x{backbone.image_size}, "
                             f"normalise mean={backbone.mean} std={backbone.std}",
            "tta": "hflip-mean" if tta else "none"}


def fingerprint_differences(theirs: dict, ours: dict) -> str:
    """What differs between the features a head was fitted on (`theirs`) and `ours`; "" when nothing does."""
    differ = [k for k in ours if theirs.get(k) != ours[k]]
    details = [f"{k}: head has {theirs.get(k)!r}, features have {ours[k]!r}" for k in differ if k != "genres"]
    if "genres" in differ:
        details.append("a different genre vocabulary")
    return "; ".join(details)


def _plain_dataset(f: h5py.File, name: str, path: Path | str) -> h5py.Dataset:
    """`name` in `f` if its data lives in this file and is of a size a feature file has: no external link or
    external raw storage (which could read another local file into the features), no huge declared shape."""
    if not isinstance(f.get(name, getlink=True), h5py.HardLink):
        raise DataError(f"{path}: not a feature file this version wrote ({name} links elsewhere)")
    dataset = f[name]
    if dataset.external or dataset.size * dataset.dtype.itemsize > MAX_FEATURE_BYTES:
        raise DataError(f"{path}: not a feature file this version wrote ({name}: external storage or over "
                        f"{MAX_FEATURE_BYTES // 2**30} GiB)")
    return dataset


def load_features(path: Path | str) -> Features:
    """The feature file at `path`, if its data set's CSV has not changed since it was extracted (where the data
    folder is here to compare): else one line saying to update the split and the features."""
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
            genres = json.loads(attrs["genres"])
            ids, parts, embeddings, labels = (_plain_dataset(f, name, path)
                                              for name in ("ids", "parts", "embeddings", "labels"))
            groups = _plain_dataset(f, "groups", path).asstr()[:] if "groups" in f else None
            features = Features(ids.asstr()[:], parts.asstr()[:], embeddings[:], labels[:], genres, attrs, groups)
    except FileNotFoundError:
        raise DataError(f"{path}: feature file not found (run `make features` first)") from None
    except (OSError, KeyError) as e:
        raise DataError(f"{path}: not a complete feature file ({e}); delete it and run `make features`") \
            from None
    data = Path(str(attrs.get("data", "")))
    if "labels_sha256" in attrs and data.is_dir() and \
            current_fingerprint(read_posters(data)) != attrs["labels_sha256"]:
        raise DataError(f"{path}: {data} changed since these features were extracted; run `make split features "
                        f"DATA={data}` (every poster keeps its part, unchanged posters are not embedded again)")
    return features


def _batches(n: int, batch_size: int) -> list[list[int]]:
    return [list(range(start, min(start + batch_size, n))) for start in range(0, n, batch_size)]


def extract(poster_set: PosterSet, split: Split, backbone: Backbone, out: Path | str, batch_size: int | None = None,
            tta: bool = False, precision: str = INFERENCE_PRECISION, workers: int | None = None,
            engine: str = "auto") -> Path:
    """Write the feature file `out` and return its path.

    Posters whose image is unchanged (same id, same sha256) since `out` was written with the same
    backbone and settings are reused; the others are embedded. A killed run resumes from its parts.
    """
    out = Path(out)
    posters = [p for part in split_posters(poster_set, split).values() for p in part]
    env, device = setup_distributed()  # under torchrun, each process embeds its share of the batches
    engine = resolve_engine(engine, device, precision)
    dtype = engine_dtype(engine, device, precision)
    # On the CPU small batches stay in cache and run fastest (docs/speed.md, "Extraction on the CPU")
    batch_size = batch_size or (64 if device.type == "cuda" else 8)
    config = {
        "format_version": FORMAT_VERSION, "dataset": split.dataset, **embedding_fingerprint(backbone, tta),
        "weights_source": backbone.weights_source, "engine": engine, "precision": str(dtype or torch.float32),
        "batch_size": batch_size,
        "data_resolved": str(Path(poster_set.root).resolve()),
    }
    layout = _layout(split)
    hashes = [_image_sha256(p.image) for p in posters]
    keys = [f"{p.id} {h}" for p, h in zip(posters, hashes)]
    reusable = _reusable_embeddings(out, config)
    todo = [row for row, key in enumerate(keys) if key not in reusable]
    if not todo and _same_attrs(out, {**layout, "ids_sha256": _sha256_lines(keys)}):
        if env.main:
            print(f"{out} is complete and up to date ({len(keys)} posters reused)")
        return out

    if not env.main:
        env.barrier()  # the main process exports the ONNX graph first, so that no two write it at once
    embedder = make_embedder(backbone, tta, engine, precision, device)
    if env.main:
        env.barrier()
    transform = pixels_transform(backbone.image_size)
    fresh, reasons, speed = _embed_rows(embedder, [posters[row].image for row in todo], transform, backbone,
                                        batch_size, workers, out, {**config, "rows": [keys[r] for r in todo]},
                                        f"{backbone.name} {split.dataset}", env)
    if not env.main:
        return out  # the main process writes the file
    embeddings = np.empty((len(keys), backbone.dim), np.float32)
    embeddings[todo] = fresh
    for row, key in enumerate(keys):
        if key in reusable:
            embeddings[row] = reusable[key]
    skipped = [(posters[todo[i]], reason) for i, reason in reasons.items()]
    _save(out, split, posters, hashes, embeddings, skipped,
          {**config, **layout, "ids_sha256": _sha256_lines(keys), "code_version": code_version(),
           "data": str(poster_set.root), "skipped": len(skipped)})
    print(f"{out}: {len(keys) - len(todo)} posters reused, {len(todo)} embedded{speed}")
    if skipped:
        print(f"{len(skipped)} unreadable posters skipped, listed in {out.with_suffix('.skipped.csv')}")
    return out


def _layout(split: Split) -> dict:
    """What a feature file records of its split: a changed genre or part makes the file out of date."""
    return {"genres": json.dumps(split.genres),
            "labels_sha256": split.fingerprint,  # every poster's genres
            "split": json.dumps({"seed": split.seed, "fractions": split.fractions, "min_count": split.min_count,
                                 "grouping": split.grouping or "none",
                                 "sizes": {p: len(split.parts[p]) for p in PARTS}})}


def _save(out: Path, split: Split, posters: list[Poster], hashes: list[str], embeddings: np.ndarray,
          skipped: list[tuple[Poster, str]], attrs: dict) -> None:
    """Write the feature file of the readable posters (NaN embeddings are the unreadable ones, listed beside it)."""
    readable = ~np.isnan(embeddings).any(axis=1)
    if not readable.any():
        raise DataError(f"none of the {len(posters)} posters of {split.dataset} could be read")
    _list_skipped(out, skipped)
    labels = label_matrix([p.genres for p in posters], split.genres)
    part_names = np.array([part for part in PARTS for _ in split.parts[part]])
    _write_h5(out, {"ids": np.array([p.id for p in posters], dtype=object)[readable],
                    "parts": part_names[readable].astype(object),
                    "groups": np.array([split.groups.get(p.id, p.id) for p in posters], dtype=object)[readable],
                    "image_sha256": np.array(hashes, dtype=object)[readable]},
              embeddings[readable], labels[readable], attrs)
    shutil.rmtree(out.with_name(out.name + ".parts"), ignore_errors=True)


def _image_sha256(path: Path) -> str:
    """The image file's content hash; "" for a file that cannot be read (it is then embedded, and skipped)."""
    try:
        return file_sha256(path)
    except OSError:
        return ""


def _sha256_lines(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _reusable_embeddings(out: Path, config: dict) -> dict[str, np.ndarray]:
    """{"<id> <image sha256>": embedding} from `out` when it was written with `config`; {} otherwise."""
    if not _same_attrs(out, config):
        return {}
    with h5py.File(out, "r") as f:
        keys = [f"{i} {h}" for i, h in zip(f["ids"].asstr()[:], f["image_sha256"].asstr()[:])]
        return dict(zip(keys, f["embeddings"][:]))


def _embed_rows(embedder: Embedder, paths: list[Path], transform, backbone: Backbone, batch_size: int,
                workers: int | None, out: Path, manifest: dict, description: str,
                env: Distributed) -> tuple[np.ndarray, dict[int, str], str]:
    """Embeddings of `paths` (NaN rows for unreadable images), {index: reason} for those, and a speed line.

    Each finished batch is saved in `<out>.parts/`, so a killed run resumes where it stopped; parts
    left by a run with another `manifest` are discarded. Under torchrun, process r embeds batches
    r, r + world size, ...; the main one then gathers every part (the others get nothing back).
    """
    parts_dir = out.with_name(out.name + ".parts")
    manifest_path = parts_dir / "config.json"
    if env.main:
        if parts_dir.exists() and (not manifest_path.exists() or json.loads(manifest_path.read_text()) != manifest):
            shutil.rmtree(parts_dir)  # leftovers of a run with other settings or other posters
        parts_dir.mkdir(parents=True, exist_ok=True)
        for stale in parts_dir.glob(".*.tmp"):  # a part a killed run was writing (core.files.atomic_write's names)
            stale.unlink(missing_ok=True)
        if not manifest_path.exists():
            write_text_atomic(manifest_path, json.dumps(manifest))
    env.barrier()

    batches = _batches(len(paths), batch_size)
    todo = [b for b in range(env.rank, len(batches), env.world_size) if not (parts_dir / f"{b:06d}.npy").exists()]
    dataset = SkippingImages(paths, transform, backbone.image_size)
    # Decoding small posters is cheap: leave most cores to the model. With 2 cores or fewer, decode between
    # batches in this process: a loader process only competes with the engine's threads there (docs/speed.md).
    cores = os.cpu_count() or 1
    workers = (0 if cores <= 2 else min(4, cores // 2)) if workers is None else workers
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=[batches[b] for b in todo], num_workers=workers,
                                         pin_memory=embedder.device.type == "cuda")
    ahead = max(1, DECODE_AHEAD_BYTES // (batch_size * 3 * backbone.image_size ** 2)) if workers == 0 else 1
    start, done_now = time.perf_counter(), 0
    share = sum(len(batch) for batch in batches[env.rank::env.world_size])
    with progress(total=share, initial=share - sum(len(batches[b]) for b in todo), unit="poster",
                  desc=description, quiet=not env.main) as bar:
        for b, (images, errors) in _in_runs(zip(todo, loader), ahead):
            embeddings = embedder(images)
            embeddings[[bool(e) for e in errors]] = np.nan  # unreadable posters, dropped by the caller
            if any(errors):  # written before the batch file, whose presence marks the batch done
                reasons = {row: error for row, error in zip(batches[b], errors) if error}
                write_text_atomic(parts_dir / f"{b:06d}.errors.json", json.dumps(reasons))
            with atomic_write(parts_dir / f"{b:06d}.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, embeddings)
            bar.update(len(errors))
            done_now += len(errors)
            for error in filter(None, errors):
                bar.write(f"skipped: {error}")
    seconds = time.perf_counter() - start
    env.barrier()  # every process's parts are written
    if not env.main:
        return np.zeros((0, backbone.dim), np.float32), {}, ""
    fresh = (np.concatenate([np.load(parts_dir / f"{b:06d}.npy") for b in range(len(batches))]) if batches
             else np.zeros((0, backbone.dim), np.float32))
    reasons = {int(row): error for path in parts_dir.glob("*.errors.json")
               for row, error in json.loads(path.read_text()).items()}
    reasons.update({int(row): "unreadable" for row in np.flatnonzero(np.isnan(fresh).any(axis=1))
                    if int(row) not in reasons})
    each = f" in each of {env.world_size} processes" if env.world_size > 1 else ""
    speed = (f"; {done_now / seconds:.1f} posters/s{each} ({backbone.name}, {embedder.describe()}, "
             f"batch {batch_size}, {workers} workers)" if done_now else "")
    return fresh, reasons, speed


def _in_runs(items: Iterable, n: int) -> Iterator:
    """`items` as they are, read `n` at a time (DECODE_AHEAD_BYTES)."""
    items = iter(items)
    while run := list(itertools.islice(items, n)):
        yield from run


def _list_skipped(out: Path, skipped: list[tuple[Poster, str]]) -> None:
    """Write <out>.skipped.csv (id, image, reason) for unreadable posters; remove a stale one if none."""
    path = out.with_suffix(".skipped.csv")
    if not skipped:
        path.unlink(missing_ok=True)
        return
    write_csv_atomic(path, ["id", "image", "reason"], ([p.id, str(p.image), reason] for p, reason in skipped))


def _same_attrs(path: Path, attrs: dict) -> bool:
    with contextlib.suppress(OSError, KeyError):
        with h5py.File(path, "r") as f:
            return all(f.attrs[k] == v for k, v in attrs.items())
    return False


def _write_h5(out: Path, columns: dict[str, np.ndarray], embeddings: np.ndarray, labels: np.ndarray,
              attrs: dict) -> None:
    """`columns` are string datasets, one entry per poster (ids, parts, groups, image hashes)."""
    # Built in memory, then written in one go: a failed write (a full disk) is then a plain OSError, and
    # HDF5 never holds a half-written file open.
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        for name, values in columns.items():
            f.create_dataset(name, data=values, dtype=h5py.string_dtype())
        f.create_dataset("embeddings", data=embeddings.astype(np.float32),
                         chunks=(min(len(labels), 1024), embeddings.shape[1]))
        f.create_dataset("labels", data=labels, chunks=(min(len(labels), 1024), labels.shape[1]))
        f.attrs.update(attrs)
    with atomic_write(out) as tmp:
        tmp.write_bytes(buffer.getbuffer())
