"""Keep, per image, the iterate that leaves the fewest correct labelled pixels (instead of the last one).

An iterative attack's last iterate is not its best: the loss it ascends is only a proxy for accuracy, and
step sizes overshoot. Every iterative attack can hand each iterate, with the logits it computed there
anyway, to a :class:`BestIterate`; only the final iterate costs one extra forward pass.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.attacks.base import input_gradient
from harness.attacks.gradient import forward, loss_and_gradient
from harness.attacks.losses import ce, correct_mask


def correct_pixels(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """int64 (N,): labelled pixels (label != 255) whose predicted class (argmax over K) is the label."""
    return correct_mask(logits, labels).flatten(1).sum(1)


class BestIterate:
    """Per image, the candidate with the fewest correct pixels seen so far; ties keep the earlier one.

    ``update(images, correct)``: ``images`` float (N, 3, H, W), ``correct`` int64 (N,) as from
    :func:`correct_pixels`. ``images`` / ``correct``: the best so far (None before the first update).
    """

    def __init__(self) -> None:
        self.images: torch.Tensor | None = None
        self.correct: torch.Tensor | None = None

    def update(self, images: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
        """Take each image of ``images`` that beats the best so far; returns bool (N,): which were taken."""
        images = images.detach()
        if self.images is None or self.correct is None:
            self.images, self.correct = images.clone(), correct.clone()
            return torch.ones_like(correct, dtype=torch.bool)
        better = correct < self.correct
        self.images = torch.where(better.view(-1, 1, 1, 1), images, self.images)
        self.correct = torch.where(better, correct, self.correct)
        return better

    def update_from_logits(self, images: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """``update`` with the correct-pixel counts of ``logits`` (the model's output at ``images``)."""
        self.update(images, correct_pixels(logits, labels))

    def result(self) -> torch.Tensor:
        if self.images is None:
            raise RuntimeError("BestIterate.result() before any update")
        return self.images


def ce_gradient(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, best: BestIterate | None) -> torch.Tensor:
    """∇ₓ of the summed per-image pixel cross entropy at ``x``; with ``best``, ``x`` is offered to it as well.

    Without ``best`` this is :func:`~harness.attacks.base.input_gradient`, the paper's computation (the CI gate
    compares its bits); with ``best`` the same gradient comes from :func:`loss_and_gradient`, which also
    returns the logits the offer needs, so keeping the best iterate costs no extra pass.
    """
    if best is None:
        return input_gradient(model, x, labels)
    point = loss_and_gradient(model, x, labels, ce)
    best.update_from_logits(x, point.logits, labels)
    return point.grad


def final_iterate(model: nn.Module, last: torch.Tensor, labels: torch.Tensor, best: BestIterate | None) -> torch.Tensor:
    """What an iterative attack returns after its last step: ``last`` itself without ``best``; with ``best``,
    ``last`` is offered (one forward pass, no graph) and the best iterate returned."""
    if best is None:
        return last
    best.update_from_logits(last, forward(model, last), labels)
    return best.result()
