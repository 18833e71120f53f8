"""A pretrained backbone with a new multi-label head, frozen up to a chosen stage."""
from __future__ import annotations

from torch import nn

from postergenre.core.errors import DataError
from postergenre.extract.backbones import Backbone


class FineTuned(nn.Module):
    def __init__(self, backbone: Backbone, n_genres: int, freeze: str = "none", dropout: float = 0.2):
        super().__init__()
        names = [name for name, _ in backbone.stages]
        if freeze != "none" and freeze not in names:
            raise DataError(f"{backbone.name} has no stage {freeze!r}; choose none or one of {', '.join(names)}")
        self.body = backbone.model
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.dim, n_genres))
        frozen_count = 0 if freeze == "none" else names.index(freeze) + 1
        # A plain list, not a ModuleList: these modules are already the body's, and registering them
        # twice would save every frozen weight twice under two names.
        self.frozen = [m for _, modules in backbone.stages[:frozen_count] for m in modules]
        for module in self.frozen:
            module.requires_grad_(False)
        # Where the trainable part begins, for training on cached activations (training/cached.py); a plain
        # list again, for the same reason.
        after = [modules for _, modules in backbone.stages[frozen_count:]]
        self._boundary = [] if not frozen_count else [after[0][0] if after else self.head]

    def train(self, mode: bool = True) -> "FineTuned":
        super().train(mode)
        for module in self.frozen:
            module.eval()  # frozen BatchNorms keep their ImageNet statistics
        return self

    @property
    def first_trainable(self) -> nn.Module | None:
        """The module whose input the frozen stages produce; None when nothing is frozen."""
        return self._boundary[0] if self._boundary else None

    def forward(self, images):
        return self.head(self.body(images))

    def parameter_groups(self, body_lr: float, head_lr: float) -> dict:
        return {"body": (list(self.body.named_parameters()), body_lr),
                "head": (list(self.head.named_parameters()), head_lr)}
