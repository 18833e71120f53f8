"""Model files: where each kind is saved, in formats whose reading runs no code from the file.

- a network (`.safetensors`): its weights, and its settings as JSON in the file's header (networks.py);
- a head (`.skops`): a scikit-learn estimator and its settings; skops rebuilds only the types it trusts by default
  (scikit-learn's, NumPy's, plain values) and the few listed in `heads.HEAD_TYPES` (heads.py). A logistic or MLP
  head also keeps its layers as plain arrays beside it, vouched for by the head (arrays.py);
- an ensemble (`.json`): a manifest naming its member files (heads and networks, in a folder beside it),
  their weights, and the per-genre scales that average them (ensemble.combine.Combination);
- a training checkpoint (`.pt`): tensors and plain values only, read with torch.load(weights_only=True);
- a backbone's weights (`--weights`): a `.safetensors` file or a state_dict read the same safe way.

What every file's settings may hold is one schema (settings.py). This module, settings.py and arrays.py import
neither torch nor scikit-learn, so the light path (predict/light.py) reads a head with them alone.

Pickle-based model files (`.joblib`, or a `.pt` network from before this format) are refused
unread: unpickling can run any command the file's author chose. Every failure is a one-line
ModelFileError naming the file.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from postergenre.core.errors import DataError, first_line
from postergenre.core.files import write_text_atomic

NETWORK_SUFFIX, HEAD_SUFFIX, ENSEMBLE_SUFFIX = ".safetensors", ".skops", ".json"
MAX_MANIFEST_BYTES, MAX_MEMBERS = 2**20, 20
# A member is named by its file name alone, inside the manifest's members folder: nothing can point elsewhere.
_MEMBER_FILE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,200}}({re.escape(NETWORK_SUFFIX)}|{re.escape(HEAD_SUFFIX)})")
SETTINGS_KEY = "postergenre"
CONVERT_HINT = "retrain it, or convert a file you trust as docs/model-files.md shows"


class ModelFileError(DataError):
    """A model file that is missing, damaged, of an unsafe format or of another architecture."""


def model_path(models_dir: Path | str, dataset: str, model: str, suffix: str) -> Path:
    """Where a data set's model is saved: `<models_dir>/<dataset>-<model><suffix>`."""
    return Path(models_dir) / f"{dataset}-{model}{suffix}"


def final_model_path(models_dir: Path | str, dataset: str, suffix: str = HEAD_SUFFIX) -> Path:
    """Where a data set's final model is saved: a head by `make final`, a network by its training command
    with --final (`suffix` NETWORK_SUFFIX), an ensemble by `make final-ensemble` (ENSEMBLE_SUFFIX). Its model
    card is beside it, as .md."""
    return model_path(models_dir, dataset, "final", suffix)


def find_final_model(models_dir: Path | str, dataset: str) -> Path | None:
    """The data set's final model, the last one made when several kinds were refit; None if none."""
    finals = [path for suffix in (HEAD_SUFFIX, NETWORK_SUFFIX, ENSEMBLE_SUFFIX)
              if (path := final_model_path(models_dir, dataset, suffix)).is_file()]
    return max(finals, key=lambda path: path.stat().st_mtime) if finals else None


def refuse_pickles(path: Path) -> None:
    if path.suffix in (".joblib", ".pkl", ".pickle", ".pt", ".pth"):
        raise ModelFileError(f"{path}: {path.suffix} model files are pickles, which can run code when loaded, so "
                             f"this version does not read them (it reads {NETWORK_SUFFIX} networks and "
                             f"{HEAD_SUFFIX} heads); {CONVERT_HINT}")
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found (make heads, make finetune or make cnn write them "
                             f"to models/)")


def members_dir(manifest: Path | str) -> Path:
    """The folder of an ensemble's member files: beside its manifest, named after it."""
    manifest = Path(manifest)
    return manifest.parent / f"{manifest.stem}-members"


def save_ensemble(path: Path | str, settings: dict) -> None:
    """An ensemble's manifest: `settings` with "members", each {"file": a name in members_dir(path), ...}."""
    write_text_atomic(path, json.dumps(settings, indent=1))


def read_ensemble(path: Path | str) -> tuple[dict[str, Path], dict]:
    """({member: its file}, settings) of an ensemble manifest; member names that are not plain file names
    of a member folder's model files, or a manifest too large to be ours, are refused."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ModelFileError(f"{path}: over {MAX_MANIFEST_BYTES // 1024} KiB, larger than any ensemble manifest")
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
        members = settings["members"]
        files = {name: members_dir(path) / member["file"] for name, member in members.items()}
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise ModelFileError(f"{path}: not an ensemble manifest ({first_line(e)})") from None
    if not 0 < len(files) <= MAX_MEMBERS or not all(
            isinstance(m["file"], str) and _MEMBER_FILE.fullmatch(m["file"]) for m in members.values()):
        raise ModelFileError(f"{path}: not an ensemble manifest (1 to {MAX_MEMBERS} members, each a model file "
                             f"named in {members_dir(path).name}/)")
    folder = members_dir(path).resolve()
    outside = [name for name, file in files.items() if not file.resolve().is_relative_to(folder)]
    if outside:  # a member named plainly can still be a symlink to a file elsewhere
        raise ModelFileError(f"{path}: member {outside[0]!r} links out of {members_dir(path).name}/; not loaded")
    return files, settings
