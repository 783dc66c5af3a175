"""The wrapper that puts the DESIGN.md boundary on every model: [0, 1] RGB in, logits out."""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SegmentationModel(nn.Module):
    """``forward(x)``: x float32 (N, 3, H, W) in [0, 1] -> logits float32 (N, K, H, W).

    ImageNet mean/std normalisation is the first layer, so it travels into every export.
    A network returning torchvision's ``{"out": ..., "aux": ...}`` is reduced to ``out``.
    """

    def __init__(self, net: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.net = net
        self.num_classes = num_classes
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net((x - self.mean) / self.std)
        if isinstance(out, dict):
            out = out["out"]
        return out
