"""PosterNet: a small CNN for posters, trained from scratch.

A stride-2 stem, then four blocks of two 3x3 conv-BN-ReLU layers, each block followed by 2x2 max
pooling (widths 32, 64, 128, 256), then global average and max pooling side by side (posters mix
large colour fields with small telling details), dropout and one linear layer.
"""
from __future__ import annotations

import torch
from torch import nn

IMAGE_SIZE = 160
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _conv(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class PosterNet(nn.Module):
    def __init__(self, n_genres: int, widths: tuple[int, ...] = (32, 64, 128, 256), dropout: float = 0.3):
        super().__init__()
        layers, c_in = _conv(3, widths[0], stride=2), widths[0]
        for width in widths:
            layers += _conv(c_in, width) + _conv(width, width) + [nn.MaxPool2d(2)]
            c_in = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c_in, n_genres))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.features(images)
        return self.classifier(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1))

    def parameter_groups(self, lr: float) -> dict:
        return {"all": (list(self.named_parameters()), lr)}
