"""Clean evaluation of anything that maps images to logits."""

from __future__ import annotations

from collections.abc import Callable

import torch

from harness import distributed
from harness.data.base import SegmentationData
from harness.errors import HarnessError
from harness.metrics import ConfusionMatrix, Scores

Predictor = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, H, W) in [0, 1] -> logits (B, K, H, W)


def evaluate(predict: Predictor, data: SegmentationData, batch_size: int = 32,
             on_batch: Callable[[int], None] | None = None) -> Scores:
    """Pixel accuracy, mean IoU and per-class IoU of ``predict`` over all of ``data``.

    Logits holding NaN or an infinity are a HarnessError: their argmax would be a silently wrong score.
    Under torchrun each rank scores its share of the batches (``distributed.batches``) and the confusion
    matrices are summed: every rank returns the scores of all of ``data``.
    """
    confusion = ConfusionMatrix(data.num_classes)
    distributed.same_inputs("the images and labels to evaluate", data.images, data.labels, batch_size=batch_size)
    mine = distributed.batches(len(data), batch_size)
    with torch.inference_mode():
        for _, items in mine:
            images, labels = data.tensors(items)
            logits = predict(images)
            if not bool(torch.isfinite(logits).all()):
                raise HarnessError(f"the model's logits hold NaN or infinite values (images {items.start} to "
                                   f"{items.stop - 1} of {data.name} {data.split}); its weights or "
                                   "engine are broken, so no score is reported")
            confusion.update(logits.argmax(1), labels)
            if on_batch is not None:
                on_batch(len(images))
    confusion.matrix = distributed.sum_over_ranks(confusion.matrix)
    if on_batch is not None and len(data) > distributed.items_in(mine):
        on_batch(len(data) - distributed.items_in(mine))  # the other ranks' images: the progress ends at all
    return confusion.scores()
