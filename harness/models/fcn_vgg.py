"""FCN-8s and FCN-16s (Long et al. 2015) on a VGG16 feature extractor of any width.

At width 64 the ``backbone`` layers have exactly the names and shapes of torchvision's
``vgg16().features``, so torchvision's published VGG16 weight file loads into it.
Upsampling is bilinear to the skip layer's actual size, so any H, W works (and exports
with dynamic spatial axes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# torchvision's VGG16 "D" configuration in units of the base width 64.
_VGG16_CFG = [1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"]


def vgg16_features(width: int, batch_norm: bool = False) -> nn.Sequential:
    """VGG16 conv layers with ``width`` channels in the first block.

    ``width=64`` is torchvision's ``vgg16().features`` (``vgg16_bn`` with ``batch_norm``).
    """
    layers: list[nn.Module] = []
    in_ch = 3
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            out_ch = int(v) * width
            layers.append(nn.Conv2d(in_ch, out_ch, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.ReLU(inplace=True))
            in_ch = out_ch
    return nn.Sequential(*layers)


class FCNVGG(nn.Module):
    """FCN on VGG16: ``stride`` 8 (FCN-8s: pool3+pool4 skips) or 16 (FCN-16s: pool4 skip)."""

    def __init__(self, num_classes: int, width: int = 64, fc_width: int = 4096, stride: int = 8,
                 batch_norm: bool = False) -> None:
        super().__init__()
        if stride not in (8, 16):
            raise ValueError("stride must be 8 or 16")
        self.stride = stride
        self.backbone = vgg16_features(width, batch_norm)
        pools = [i for i, layer in enumerate(self.backbone) if isinstance(layer, nn.MaxPool2d)]
        # Outputs of pool3 and pool4 feed the skip connections.
        self._pool3, self._pool4 = pools[2], pools[3]
        self.fc = nn.Sequential(
            nn.Conv2d(8 * width, fc_width, 7, padding=3), nn.ReLU(inplace=True), nn.Dropout2d(0.5),
            nn.Conv2d(fc_width, fc_width, 1), nn.ReLU(inplace=True), nn.Dropout2d(0.5),
        )
        self.score_fr = nn.Conv2d(fc_width, num_classes, 1)
        self.score_pool4 = nn.Conv2d(8 * width, num_classes, 1)
        self.score_pool3 = nn.Conv2d(4 * width, num_classes, 1) if stride == 8 else None
        # Skip scores start at zero, as in Long et al.'s staged training.
        for conv in (self.score_pool4, self.score_pool3):
            if conv is not None:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = {}
        h = x
        for i, layer in enumerate(self.backbone):
            h = layer(h)
            if i in (self._pool3, self._pool4):
                feats[i] = h
        score = self.score_fr(self.fc(h))
        skip4 = self.score_pool4(feats[self._pool4])
        score = F.interpolate(score, size=skip4.shape[-2:], mode="bilinear", align_corners=False) + skip4
        if self.score_pool3 is not None:
            skip3 = self.score_pool3(feats[self._pool3])
            score = F.interpolate(score, size=skip3.shape[-2:], mode="bilinear", align_corners=False) + skip3
        return F.interpolate(score, size=size, mode="bilinear", align_corners=False)
