"""Clean evaluation of anything that maps images to logits."""

from __future__ import annotations

from collections.abc import Callable

import torch

from harness.data.base import SegmentationData
from harness.metrics import ConfusionMatrix, Scores

Predictor = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, H, W) in [0, 1] -> logits (B, K, H, W)


def evaluate(predict: Predictor, data: SegmentationData, batch_size: int = 32,
             on_batch: Callable[[int], None] | None = None) -> Scores:
    """Pixel accuracy, mean IoU and per-class IoU of ``predict`` over all of ``data``."""
    confusion = ConfusionMatrix(data.num_classes)
    with torch.inference_mode():
        for images, labels in data.batches(batch_size):
            confusion.update(predict(images).argmax(1), labels)
            if on_batch is not None:
                on_batch(len(images))
    return confusion.scores()
