"""Segmentation metrics from one confusion matrix; label 255 (ignore) never counts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.data.base import IGNORE_INDEX
from harness.errors import HarnessError


class ConfusionMatrix:
    """Accumulates a K x K matrix: rows are true classes, columns predicted classes."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, predictions: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> None:
        """predictions and labels: integer class maps of one shape, e.g. (N, H, W)."""
        pred = np.asarray(predictions.cpu() if isinstance(predictions, torch.Tensor) else predictions).ravel()
        true = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).ravel()
        if pred.shape != true.shape:
            raise ValueError(f"predictions {pred.shape} and labels {true.shape} differ in size")
        keep = true != IGNORE_INDEX
        pred, true = pred[keep].astype(np.int64), true[keep].astype(np.int64)
        if true.size and (true.max() >= self.num_classes or true.min() < 0):
            raise ValueError(f"label {int(true.max())} outside 0..{self.num_classes - 1} (and 255)")
        k = self.num_classes
        self.matrix += np.bincount(true * k + pred, minlength=k * k).reshape(k, k)

    def scores(self) -> Scores:
        """The scores of everything counted so far; a HarnessError when no labelled pixel was counted (the
        fractions would be 0/0: never reported as NaN)."""
        m = self.matrix.astype(np.float64)
        total = m.sum()
        if not total:
            raise HarnessError("no labelled pixel to score: every label is 255 (ignore); check the masks")
        tp = np.diag(m)
        union = m.sum(0) + m.sum(1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
        present = ~np.isnan(iou)
        return Scores(
            pixel_accuracy=float(tp.sum() / total),
            mean_iou=float(iou[present].mean()),
            per_class_iou=[None if np.isnan(v) else float(v) for v in iou],
            n_pixels=int(total),
        )


@dataclass
class Scores:
    """Fractions in [0, 1]. mean IoU averages the classes that occur (in labels or predictions);
    a class that never occurs has per-class IoU ``None``."""

    pixel_accuracy: float
    mean_iou: float
    per_class_iou: list[float | None]
    n_pixels: int
