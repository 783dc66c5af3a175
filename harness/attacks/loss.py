"""The attacks' objective: pixel-wise cross entropy over the labelled pixels (the paper's eq. 6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.data.base import IGNORE_INDEX


def pixel_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, *, validate: bool = True,
                        weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross entropy over each image's non-ignored pixels.

    ``logits``: float (N, K, H, W); ``labels``: int64 (N, H, W) with values in 0..K-1 or 255
    (ignored). Returns float (N,): one loss per image, so an image's gradient never depends on
    the other images of its batch. An image whose pixels are all ignored has loss 0.
    Raises ValueError on mismatched shapes or labels outside 0..K-1 and 255. ``validate=False``
    skips the label check (it reads the labels back, a device sync) for callers that checked them.
    ``weights`` (N, H, W), optional: each pixel's cross entropy is multiplied by its weight before the
    sum; the divisor stays the image's count of labelled pixels (weights of ignored pixels do not matter).
    """
    if logits.ndim != 4 or labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"logits (N, K, H, W) and labels (N, H, W) do not fit: "
                         f"{tuple(logits.shape)} and {tuple(labels.shape)}")
    valid = labels != IGNORE_INDEX
    if validate and bool(((labels < 0) | (labels >= logits.shape[1])).logical_and(valid).any()):
        raise ValueError(f"labels must be in 0..{logits.shape[1] - 1} or {IGNORE_INDEX}")
    per_pixel = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none")
    if weights is not None:
        if weights.shape != labels.shape:
            raise ValueError(f"weights must have the labels' shape {tuple(labels.shape)}, got {tuple(weights.shape)}")
        per_pixel = per_pixel * weights
    return labelled_pixel_mean(per_pixel, labels)


def labelled_pixel_mean(per_pixel: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """float (N,): each image's sum of ``per_pixel`` (N, H, W; 0 at ignored pixels) over its count of labelled
    pixels (at least 1, so an image with none gives 0)."""
    counts = (labels != IGNORE_INDEX).flatten(1).sum(1).clamp(min=1)
    return per_pixel.flatten(1).sum(1) / counts
