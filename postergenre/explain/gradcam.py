"""Grad-CAM (Selvaraju et al. 2017): which parts of a poster raised a genre's score.

The class activation map weighs the network's last feature map by the gradient of the genre's
logit, averaged over space. The layer is found by running the network: the last module whose
output is still a spatial map, so one function serves the fine-tuned backbones and PosterNet.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from matplotlib import colormaps
from torch import nn


def grad_cam(network: nn.Module, image: torch.Tensor, genre: int) -> tuple[np.ndarray, float]:
    """The heatmap (h, w) in [0, 1] for one transformed poster (3, H, W), and the genre's probability."""
    maps: list[torch.Tensor] = []

    def keep_spatial(module: nn.Module, inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-1] > 1:
            maps.append(output)

    handles = [m.register_forward_hook(keep_spatial) for m in network.modules() if m is not network]
    try:
        network.eval()
        x = image.unsqueeze(0).to(next(network.parameters()).device).requires_grad_(True)
        with torch.enable_grad():
            logit = network(x)[0, genre]
            activation = maps[-1]
            (gradient,) = torch.autograd.grad(logit, activation)
    finally:
        for handle in handles:
            handle.remove()
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(dim=1))[0].detach().float()
    cam = cam / cam.max() if cam.max() > 0 else cam
    return cam.cpu().numpy(), float(torch.sigmoid(logit.detach().float()))


def overlay(poster: Image.Image, cam: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """The heatmap stretched over the whole poster (the model saw it squashed to a square) and blended in."""
    heat = Image.fromarray((cam * 255).astype(np.uint8)).resize(poster.size, Image.BILINEAR)
    colours = colormaps["jet"](np.asarray(heat) / 255.0)[..., :3]
    coloured = Image.fromarray((colours * 255).astype(np.uint8))
    return Image.blend(poster.convert("RGB"), coloured, alpha)
