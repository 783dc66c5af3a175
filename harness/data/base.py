"""The data-set contract shared by every source.

An item is ``(image, label)``: image float32 (3, H, W) RGB in [0, 1]; label int64 (H, W)
with class indices and 255 for "ignore". All items of one data set share one size.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

IGNORE_INDEX = 255
# Labels are 8-bit with 255 reserved for "ignore", so a data set or checkpoint has at most 255 classes.
MAX_CLASSES = IGNORE_INDEX


def is_class_name(text: object) -> bool:
    """A class name: a non-empty string without control characters (names are printed in tables and messages)."""
    return isinstance(text, str) and bool(text) and not any(unicodedata.category(c).startswith("C") for c in text)


@dataclass
class SegmentationData:
    """Images and labels held as uint8 arrays: images (N, H, W, 3), labels (N, H, W)."""

    name: str
    split: str
    class_names: list[str]
    images: np.ndarray
    labels: np.ndarray
    ids: list[str]
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != self.images.shape[:3] or self.labels.dtype != np.uint8:
            raise ValueError(f"labels must be uint8 (N, H, W) matching images, got {self.labels.shape}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    def __len__(self) -> int:
        return len(self.images)

    def describe(self) -> dict[str, Any]:
        """What identifies this data set in checkpoints and results (JSON-serialisable)."""
        return {"name": self.name, "split": self.split, "classes": self.class_names, **self.params}

    def subset(self, n: int | None) -> SegmentationData:
        """The first ``n`` items (all when ``n`` is None); a fixed, reproducible subset."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ValueError("n must be >= 1")
        return SegmentationData(self.name, self.split, self.class_names, self.images[:n],
                                self.labels[:n], self.ids[:n], self.params)

    def tensors(self, indices: Sequence[int] | slice | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Images float32 (B, 3, H, W) in [0, 1] and labels int64 (B, H, W)."""
        images = torch.from_numpy(np.ascontiguousarray(self.images[indices])).permute(0, 3, 1, 2)
        labels = torch.from_numpy(np.ascontiguousarray(self.labels[indices])).long()
        return images.float().div_(255.0), labels

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """All items in order, ``batch_size`` at a time (the last batch may be smaller)."""
        for start in range(0, len(self), batch_size):
            yield self.tensors(slice(start, start + batch_size))
