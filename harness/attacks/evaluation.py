"""Clean and adversarial scores of a model on a data set, attacked batch by batch."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from harness import distributed
from harness.attacks.base import Attack
from harness.attacks.worst_case import WorstCase, WorstCaseResult, WorstCaseScores, WorstCaseTally
from harness.data.base import SegmentationData
from harness.metrics import ConfusionMatrix, Scores


@dataclass
class AttackEvaluation:
    """Scores on the same images before and after the attack.

    ``queries``: forward+backward passes of single images; ``attack_seconds``: time inside the
    attack; ``clean_seconds``: time of the clean forward passes. ``adversarial``: the images,
    float32 (N, 3, H, W) in [0, 1], only when asked for.
    """

    clean: Scores
    attacked: Scores
    queries: int
    attack_seconds: float
    clean_seconds: float
    adversarial: np.ndarray | None = None
    worst_case: WorstCaseScores | None = None  # a WorstCase attack's selections; ``attacked`` is its scores


def batch_seed(seed: int, batch_index: int) -> int:
    """A distinct, reproducible seed for each batch of a run."""
    return int(np.random.SeedSequence([seed, batch_index]).generate_state(1)[0])


def evaluate_attack(model: nn.Module, data: SegmentationData, attack: Attack, batch_size: int = 16,
                    seed: int = 0, device: str | torch.device = "cpu", keep_adversarial: bool = False,
                    on_batch: Callable[[int], None] | None = None) -> AttackEvaluation:
    """Attack every image of ``data`` (in order, ``batch_size`` at a time) and score both versions.

    Results are reproducible for a given seed, batch size and device. ``on_batch(n)`` is called
    after each batch of n images. Under torchrun each rank attacks its share of the batches
    (``distributed.batches``: the same batches and batch seeds as one process) and every rank returns the
    whole result: confusion matrices and queries summed, adversarial images and worst-case tallies gathered,
    seconds summed (the compute spent, not the wall time).
    """
    clean, attacked = ConfusionMatrix(data.num_classes), ConfusionMatrix(data.num_classes)
    height, width = data.image_size
    distributed.same_inputs("the images and labels to attack", data.images, data.labels, batch_size=batch_size)
    mine = distributed.batches(len(data), batch_size)
    first = mine[0][1].start if mine else 0
    kept = np.empty((distributed.items_in(mine), 3, height, width), np.float32) if keep_adversarial else None
    queries, attack_seconds, clean_seconds = 0, 0.0, 0.0
    tally = WorstCaseTally(attack.member_labels, data.num_classes) if isinstance(attack, WorstCase) else None
    for index, items in mine:
        images, labels = data.tensors(items)
        images, labels = images.to(device), labels.to(device)
        start = time.perf_counter()
        with torch.inference_mode():
            clean.update(model(images).argmax(1), labels)
        clean_seconds += time.perf_counter() - start
        result = attack(model, images, labels, seed=batch_seed(seed, index))
        queries += result.queries
        if tally is not None:
            assert isinstance(result, WorstCaseResult)
            tally.add(result.predictions, labels)
        attack_seconds += result.seconds
        with torch.inference_mode():
            attacked.update(model(result.images).argmax(1), labels)
        if kept is not None:
            kept[items.start - first:items.stop - first] = result.images.cpu().numpy()
        if on_batch is not None:
            on_batch(len(images))
    if distributed.world().size > 1:
        for confusion in (clean, attacked):
            confusion.matrix = distributed.sum_over_ranks(confusion.matrix)
        queries, attack_seconds, clean_seconds = (float(v) for v in distributed.sum_over_ranks(
            np.array([queries, attack_seconds, clean_seconds], np.float64)))
        queries = int(queries)
        kept = distributed.gather_rows(kept) if kept is not None else None
        if tally is not None:
            tally.gather_ranks()
        if on_batch is not None and len(data) > distributed.items_in(mine):
            on_batch(len(data) - distributed.items_in(mine))
    worst_case = tally.result() if tally is not None else None
    return AttackEvaluation(clean.scores(), attacked.scores() if worst_case is None else worst_case.scores, queries,
                            attack_seconds, clean_seconds, kept, worst_case)
