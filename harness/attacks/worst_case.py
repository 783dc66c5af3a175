"""The per-image worst case over several attacks, and a SEA-style ensemble (Croce et al. 2024) as one of them.

For each image, the adversarial image (among the members' results) with the fewest correct labelled
pixels; ties go to the earlier member. Each member runs with the caller's seed, so the worst case of an
image is never worse (for the attacker) than any member run alone with that seed: its pixel accuracy is,
image by image, at most each member's.

mIoU is no per-image metric, so over a whole data set the worst case is chosen for it separately
(:class:`WorstCaseTally`, SEA's greedy selection over images): per image, the member whose class map, put into
the data set's confusion matrix in place of the current one, lowers the mIoU the most. A record of a worst
case therefore reports pixel accuracy from the per-image minimum and mIoU (and per-class IoU) from the greedy
selection, and says how many images each member won for each.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from harness import distributed
from harness.attacks.apgd import APGD
from harness.attacks.base import Attack, AttackResult
from harness.attacks.gradient import forward
from harness.data.base import IGNORE_INDEX
from harness.errors import HarnessError
from harness.metrics import ConfusionMatrix, Scores

# SEA's paper runs the masked, balanced and spherical losses and JS, each with the reduced-ε schedule and 300
# steps. Here plain CE joins them and the schedule is off, as measured on the reduced test models (16 images, ε 8,
# 100 steps): the reduced-ε members were weaker (fcn-resnet50: apgd-mce 0.49 % pixel accuracy, apgd-mce-red
# 2.37 %), and on a model predicting two classes (fcn16s-vgg16) apgd-ce (46.9 %) beat every masked loss and JS
# (51.6-58.0 %) and still wins 4 of the 16 images beside msph (45.5 %).
SEA_LOSSES = ("ce", "mce", "bmce", "js", "msph")
SEA_STEPS = 100
# Passes of the greedy mIoU selection over the images: each pass only lowers the mIoU; it stops earlier when a
# pass changes nothing (one or two passes do on the measured runs).
MIOU_PASSES = 4


@dataclass
class WorstCaseResult(AttackResult):
    """An :class:`AttackResult` with ``members`` (their labels), ``winner`` int64 (N,): per image, the index of
    the member whose image was kept, and ``predictions`` int64 (M, N, H, W): each member's class map of its own
    adversarial images (what :class:`WorstCaseTally` selects from). ``seconds`` includes the members' runs and
    the selection."""

    members: tuple[str, ...] = ()
    winner: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))
    predictions: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))

    def wins(self) -> dict[str, int]:
        """Images won per member, every member listed (0 when it won none)."""
        return win_counts(self.members, self.winner)


def win_counts(members: Sequence[str], winner: torch.Tensor | np.ndarray) -> dict[str, int]:
    """``{member: images won}`` for int (N,) member indices ``winner``, every member listed."""
    counts = np.bincount(np.asarray(winner.cpu() if isinstance(winner, torch.Tensor) else winner, dtype=np.int64),
                         minlength=len(members)).tolist()
    return dict(zip(members, counts, strict=True))


def fewest_correct(predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """int64 (N,): per image, the index of the class map among ``predictions`` (M, N, H, W) with the fewest
    correct labelled pixels; ties go to the first (``argmin`` returns the first minimum)."""
    valid = labels != IGNORE_INDEX
    correct = ((predictions == labels.unsqueeze(0)) & valid.unsqueeze(0)).flatten(2).sum(2)  # (M, N)
    return correct.argmin(0)


def select_worst(model: nn.Module, labels: torch.Tensor, candidates: Sequence[torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the candidate batch entry with the fewest correct labelled pixels under ``model``.

    ``candidates``: one or more float (N, 3, H, W) batches of the same images. Returns (images, winner):
    the chosen images and int64 (N,) the index of the candidate each came from (ties: the first).
    """
    images, winner, _ = _select(model, labels, candidates)
    return images, winner


def _select(model: nn.Module, labels: torch.Tensor, candidates: Sequence[torch.Tensor]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not candidates:
        raise HarnessError("the worst case needs at least one attack")
    predictions = torch.stack([forward(model, images).argmax(1) for images in candidates])
    winner = fewest_correct(predictions, labels)
    stacked = torch.stack(list(candidates))
    chosen = stacked[winner, torch.arange(len(winner), device=winner.device)]
    return chosen, winner, predictions


class WorstCase(Attack):
    """Runs every member attack (same ε) on the batch and keeps each image's worst case (see module doc).

    ``iterations`` is the members' total; ``label`` defaults to the members' labels joined by ``+``
    (``apgd-mce-100+pgd-20``: what :func:`harness.attacks.attacks_from_names` parses back). The name is the label and
    ``params`` has no ``steps``: reports build a record's column from both. ``params["members"]`` is the
    members' labels joined by ``+`` (a record's params hold JSON scalars only).
    """

    name = "worst"

    def __init__(self, members: Sequence[Attack], label: str | None = None) -> None:
        members = list(members)
        if not members:
            raise HarnessError("the worst case needs at least one attack")
        if any(isinstance(m, WorstCase) for m in members):
            raise HarnessError("a worst case cannot contain another worst case; list its attacks instead")
        labels = [m.label for m in members]
        if len(set(labels)) != len(labels):
            raise HarnessError(f"the worst case names the same attack twice: {','.join(labels)}")
        if len({m.eps for m in members}) != 1:
            raise HarnessError(f"the worst case's attacks must share one eps, got {sorted({m.eps for m in members})}")
        super().__init__(members[0].eps)
        self.members = members
        self.name = label or "+".join(labels)

    @property
    def iterations(self) -> int:
        return sum(m.iterations for m in self.members)

    @property
    def label(self) -> str:
        return self.name

    @property
    def member_labels(self) -> tuple[str, ...]:
        return tuple(m.label for m in self.members)

    def params(self) -> dict[str, Any]:
        return {"eps": self.eps, "members": "+".join(self.member_labels)}

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 seed: int = 0) -> WorstCaseResult:
        """Each member's ``__call__`` with ``seed``, then the per-image selection. Bad input raises HarnessError
        from the first member's own checks, before it runs."""
        start = time.perf_counter()
        results = [m(model, images, labels, seed=seed) for m in self.members]
        chosen, winner, predictions = _select(model, labels, [r.images for r in results])
        if chosen.is_cuda:
            torch.cuda.synchronize(chosen.device)
        seconds = time.perf_counter() - start
        return WorstCaseResult(chosen, self.iterations, sum(r.queries for r in results), seconds,
                               self.member_labels, winner, predictions)

    def _perturb(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        # The members draw from their own seeded generators; __call__ hands them the seed itself.
        raise NotImplementedError("WorstCase runs through __call__")


def sea(eps: float = 8.0, steps: int = SEA_STEPS) -> WorstCase:
    """The worst case of APGD with CE, the masked CE, the balanced masked CE, the JS divergence and the masked
    spherical loss, each with ``steps`` steps (see SEA_LOSSES); label ``sea`` (``sea-N`` for N ≠ 100)."""
    members = [APGD(eps, steps, loss) for loss in SEA_LOSSES]
    return WorstCase(members, "sea" if steps == SEA_STEPS else f"sea-{steps}")


@dataclass
class WorstCaseScores:
    """The worst case over a data set. ``scores``: pixel accuracy of the per-image minimum, mIoU and per-class
    IoU of the greedy mIoU selection; ``accuracy_winner`` / ``miou_winner`` int64 (N,): per image, the member
    each selection took; ``member_scores``: each member's own scores on all images."""

    members: tuple[str, ...]
    scores: Scores
    accuracy_winner: np.ndarray
    miou_winner: np.ndarray
    member_scores: tuple[Scores, ...]

    def record_fields(self) -> dict[str, Any]:
        """What a record of the worst case carries beside its scores (``worst_case``: members and win counts)."""
        return {"worst_case": {"members": list(self.members),
                               "pixel_accuracy_wins": win_counts(self.members, self.accuracy_winner),
                               "mean_iou_wins": win_counts(self.members, self.miou_winner),
                               "mean_iou_selection": "greedy over images"}}


class WorstCaseTally:
    """Collects, batch by batch, every member's class maps of the same images, and selects the worst case.

    Per image and member it keeps the image's confusion matrix, sparse (its non-zero cells), so memory grows
    with the images and classes present, not with the image size. :meth:`result` applies both selections (see
    the module docstring); its mIoU is never above that of any member alone nor of the per-image minimum's
    images (the greedy search starts from the lowest of those and only accepts improvements).
    """

    def __init__(self, members: Sequence[str], num_classes: int) -> None:
        if not members:
            raise HarnessError("the worst case needs at least one attack")
        self.members = tuple(members)
        self.num_classes = num_classes
        self._cells: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in self.members]  # per member, image
        self._correct: list[np.ndarray] = []  # per batch: (M, n) correct labelled pixels

    def add(self, predictions: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> None:
        """``predictions`` int (M, n, H, W): each member's class maps of a batch; ``labels`` int (n, H, W)."""
        pred = np.asarray(predictions.cpu() if isinstance(predictions, torch.Tensor) else predictions, np.int64)
        true = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, np.int64)
        if pred.ndim != 4 or pred.shape[0] != len(self.members) or pred.shape[1:] != true.shape:
            raise ValueError(f"predictions {pred.shape} do not fit {len(self.members)} members and labels {true.shape}")
        k, valid = self.num_classes, true != IGNORE_INDEX
        if bool(((pred < 0) | (pred >= k)).any()) or bool((valid & ((true < 0) | (true >= k))).any()):
            raise ValueError(f"a class index outside 0..{k - 1}")
        self._correct.append(((pred == true) & valid).reshape(*pred.shape[:2], -1).sum(2))
        for m in range(len(self.members)):
            for image in range(true.shape[0]):
                keep = valid[image]
                cells, counts = np.unique(true[image][keep] * k + pred[m, image][keep], return_counts=True)
                self._cells[m].append((cells, counts))

    def __len__(self) -> int:
        return len(self._cells[0])

    def gather_ranks(self) -> None:
        """Under torchrun: every rank's images (its shard, in rank order) in every rank's tally, so that each
        selects over all of them as one process would (nothing to do alone)."""
        if distributed.world().size == 1:
            return
        parts = distributed.gather((self._cells, self._correct))
        self._cells = [[cell for cells, _ in parts for cell in cells[m]] for m in range(len(self.members))]
        self._correct = [batch for _, correct in parts for batch in correct]

    def result(self) -> WorstCaseScores:
        """Both selections over every image added so far (HarnessError when none, or no pixel is labelled)."""
        if not len(self):
            raise HarnessError("the worst case has no image to select from")
        correct = np.concatenate(self._correct, axis=1)  # (M, N)
        accuracy_winner = np.argmin(correct, axis=0)  # the first member among equals, as fewest_correct
        member_choices = [np.full(len(self), m) for m in range(len(self.members))]
        start = min([accuracy_winner, *member_choices], key=self._miou)  # min keeps the first among equals
        miou_winner = self._greedy(start)
        by_accuracy, by_miou = self._scores(accuracy_winner), self._scores(miou_winner)
        scores = Scores(by_accuracy.pixel_accuracy, by_miou.mean_iou, by_miou.per_class_iou, by_accuracy.n_pixels)
        return WorstCaseScores(self.members, scores, accuracy_winner, miou_winner,
                               tuple(self._scores(c) for c in member_choices))

    def _matrix(self, choice: np.ndarray) -> np.ndarray:
        total = np.zeros(self.num_classes ** 2, np.int64)
        for image, m in enumerate(choice):
            cells, counts = self._cells[m][image]
            total[cells] += counts
        return total

    def _scores_of(self, total: np.ndarray) -> Scores:
        confusion = ConfusionMatrix(self.num_classes)
        confusion.matrix = total.reshape(self.num_classes, self.num_classes)
        return confusion.scores()

    def _scores(self, choice: np.ndarray) -> Scores:
        return self._scores_of(self._matrix(choice))

    def _miou(self, choice: np.ndarray) -> float:
        return self._scores(choice).mean_iou

    def _greedy(self, start: np.ndarray) -> np.ndarray:
        """From ``start``, image by image: the member that lowers the data set's mIoU the most, when any does."""
        choice = start.copy()
        total = self._matrix(choice)
        current = self._scores_of(total).mean_iou
        for _ in range(MIOU_PASSES):
            changed = False
            for image in range(len(choice)):
                old_cells, old_counts = self._cells[choice[image]][image]
                without = total.copy()
                without[old_cells] -= old_counts
                best_member, best_total, best_value = None, total, current
                for m in range(len(self.members)):
                    if m == choice[image]:
                        continue
                    cells, counts = self._cells[m][image]
                    trial = without.copy()
                    trial[cells] += counts
                    value = self._scores_of(trial).mean_iou
                    if value < best_value:
                        best_member, best_total, best_value = m, trial, value
                if best_member is not None:
                    choice[image], total, current, changed = best_member, best_total, best_value, True
            if not changed:
                break
        return choice
