"""Clean evaluation of anything that maps images to logits."""

from __future__ import annotations

from collections.abc import Callable

import torch

from harness.data.base import SegmentationData
from harness.errors import HarnessError
from harness.metrics import ConfusionMatrix, Scores

Predictor = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, H, W) in [0, 1] -> logits (B, K, H, W)


def evaluate(predict: Predictor, data: SegmentationData, batch_size: int = 32,
             on_batch: Callable[[int], None] | None = None) -> Scores:
    """Pixel accuracy, mean IoU and per-class IoU of ``predict`` over all of ``data``.

    Logits holding NaN or an infinity are a HarnessError: their argmax would be a silently wrong score.
    """
    confusion = ConfusionMatrix(data.num_classes)
    with torch.inference_mode():
        for start, (images, labels) in zip(range(0, len(data), batch_size), data.batches(batch_size), strict=True):
            logits = predict(images)
            if not bool(torch.isfinite(logits).all()):
                raise HarnessError(f"the model's logits hold NaN or infinite values (images {start} to "
                                   f"{start + len(images) - 1} of {data.name} {data.split}); its weights or "
                                   "engine are broken, so no score is reported")
            confusion.update(logits.argmax(1), labels)
            if on_batch is not None:
                on_batch(len(images))
    return confusion.scores()
