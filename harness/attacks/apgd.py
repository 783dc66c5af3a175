"""APGD (Croce & Hein 2020): sign-gradient ascent with momentum and a step size that halves at checkpoints.

The algorithm, per image, for N steps inside the ball B = {x' : ‖x' − x‖∞ ≤ ε} ∩ [0, 1]:

- η₀ = 2ε; x⁽¹⁾ = Π_B(x⁽⁰⁾ + η sign ∇f(x⁽⁰⁾)); for k ≥ 1, with α = 0.75:
  z = Π_B(x⁽ᵏ⁾ + η sign ∇f(x⁽ᵏ⁾)), x⁽ᵏ⁺¹⁾ = Π_B(x⁽ᵏ⁾ + α (z − x⁽ᵏ⁾) + (1 − α)(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾)).
- Checkpoints wⱼ = ⌈pⱼ N⌉ with p₀ = 0, p₁ = 0.22, pⱼ₊₁ = pⱼ + max(pⱼ − pⱼ₋₁ − 0.03, 0.06) (:func:`apgd_checkpoints`).
- At checkpoint wⱼ the step size halves, and the iterate restarts from the highest-loss point x_max, when
  (1) fewer than ρ = 0.75 of the steps since wⱼ₋₁ raised the loss (f(x⁽ⁱ⁺¹⁾) > f(x⁽ⁱ⁾)), or
  (2) the step size was not halved at wⱼ₋₁ and the highest loss did not rise since wⱼ₋₁
  (:func:`step_size_halvings`).

Segmentation (Croce et al. 2024, "SEA"): the gradient is that of one of
:data:`~harness.attacks.losses.SEGMENTATION_LOSSES`; the image returned is, per image, the iterate with the
fewest correct labelled pixels. The schedule's f (conditions 1 and 2, x_max) is the loss for ``ce``, ``js``
and ``msph``, but minus the count of correct labelled pixels for the masked cross entropies ``mce`` and
``bmce``: a pixel that flips takes its positive cross entropy out of their sum, so their loss falls as the
attack succeeds and, with f = loss, the restarts go back to points with many correct pixels (measured on the
tests' briefly trained reduced fcn8s-vgg16, 16 images, 100 steps: apgd-mce leaves 11.5 % pixel accuracy with
f = loss, 3.5 % with f = minus the correct count; on the default-trained one 6.02 % and 0.73 %:
benchmarks/independent_attacks.py). ``msph``'s masked terms are minus a cosine, negative while the label's logit
is positive, so a flip raises its loss and f = loss agrees with the count (measured on the four default-trained
models, 16 images: apgd-msph-100 leaves 0.04-0.16 % with f = loss, 0.02-0.26 % with the count).
``reduced_eps`` runs SEA's progressive radius reduction: the N steps split 3 : 3 : 4 over radii 2ε, 1.5ε and ε,
each stage a fresh APGD run (its own η₀ = 2·radius and checkpoints) started from the previous stage's x_max
projected onto the smaller ball; only the last stage (radius ε) supplies the returned image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.attacks.base import IterativeAttack, linf_box
from harness.attacks.best_iterate import BestIterate, correct_pixels
from harness.attacks.gradient import forward, loss_and_gradient
from harness.attacks.losses import SEGMENTATION_LOSSES
from harness.errors import HarnessError

MOMENTUM = 0.75
RHO = 0.75
# Losses whose schedule follows the count of correct pixels (see the module docstring; msph is not one).
ACCURACY_SCHEDULED = ("mce", "bmce")
# SEA's reduced-ε schedule: (radius as a multiple of ε, share of the steps).
REDUCED_EPS_STAGES = ((2.0, 0.3), (1.5, 0.3), (1.0, 0.4))

# evaluate(x, with_gradient) -> (f (N,), gradient or None, correct labelled pixels (N,)); f: what the schedule
# maximises (the loss, or minus the correct count), the gradient: that of the loss.
Evaluate = Callable[[torch.Tensor, bool], tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]


def apgd_checkpoints(steps: int) -> tuple[int, ...]:
    """The distinct checkpoints 0 = w₀ < w₁ < ... ≤ ``steps``: wⱼ = ⌈pⱼ · steps⌉ for pⱼ ≤ 1."""
    p_prev, p = 0.0, 0.22
    points = [0]
    while p <= 1:
        w = math.ceil(round(p * steps, 9))  # round: 0.22 · 100 is 22.000000000000004 in floating point
        if w > points[-1]:
            points.append(w)
        p_prev, p = p, p + max(p - p_prev - 0.03, 0.06)
    return tuple(points)


def step_size_halvings(increases: torch.Tensor, window: int, halved_last: torch.Tensor,
                       best_loss: torch.Tensor, best_loss_last: torch.Tensor, rho: float = RHO) -> torch.Tensor:
    """bool (N,): which images halve their step size at a checkpoint.

    ``increases``: per image, how many of the ``window`` steps since the last checkpoint raised the loss;
    ``halved_last``: whether it halved at the last checkpoint; ``best_loss`` / ``best_loss_last``: its highest
    loss now and at the last checkpoint.
    """
    oscillating = increases < rho * window
    stalled = ~halved_last & (best_loss <= best_loss_last)
    return oscillating | stalled


@dataclass
class ApgdRun:
    """``last``: the last iterate; ``x_max`` / ``loss_max``: the highest-loss iterate and its loss;
    ``step_sizes`` (steps, N): the step size each step used ([0, 1] units)."""

    last: torch.Tensor
    x_max: torch.Tensor
    loss_max: torch.Tensor
    step_sizes: torch.Tensor


def run_apgd(evaluate: Evaluate, start: torch.Tensor, low: torch.Tensor, high: torch.Tensor, eps: float,
             steps: int, best: BestIterate | None = None, momentum: float = MOMENTUM, rho: float = RHO) -> ApgdRun:
    """APGD for ``steps`` steps from ``start`` (inside [low, high]) in [0, 1] units, radius ``eps``; "loss"
    below is the f that ``evaluate`` returns.

    Costs ``steps`` evaluations with a gradient (x⁽⁰⁾..x⁽ᴺ⁻¹⁾) and one without (x⁽ᴺ⁾). Every evaluated
    iterate, the start included, is offered to ``best``.
    """
    def offer(x: torch.Tensor, correct: torch.Tensor) -> None:
        if best is not None:
            best.update(x, correct)

    x = start
    loss, grad, correct = evaluate(x, True)
    offer(x, correct)
    x_prev, x_max, loss_max, grad_max = x, x, loss, grad
    eta = torch.full_like(loss, 2 * eps)
    checkpoints = set(apgd_checkpoints(steps))
    halved_last = torch.zeros_like(loss, dtype=torch.bool)
    loss_max_last, increases, last_check = loss_max, torch.zeros_like(loss), 0
    step_sizes = []
    for k in range(steps):
        step_sizes.append(eta)
        z = torch.clamp(x + eta.view(-1, 1, 1, 1) * grad.sign(), low, high)
        x_new = z if k == 0 else torch.clamp(x + momentum * (z - x) + (1 - momentum) * (x - x_prev), low, high)
        more = k + 1 < steps
        loss_new, grad_new, correct = evaluate(x_new, more)
        offer(x_new, correct)
        increases = increases + (loss_new > loss).float()
        improved = loss_new > loss_max
        x_max = torch.where(improved.view(-1, 1, 1, 1), x_new, x_max)
        loss_max = torch.where(improved, loss_new, loss_max)
        x_prev, x, loss, grad = x, x_new, loss_new, grad_new
        if not more:
            break
        assert grad is not None and grad_max is not None
        grad_max = torch.where(improved.view(-1, 1, 1, 1), grad, grad_max)
        if k + 1 in checkpoints:
            halve = step_size_halvings(increases, k + 1 - last_check, halved_last, loss_max, loss_max_last, rho)
            halved_last, loss_max_last, increases, last_check = halve, loss_max, torch.zeros_like(loss), k + 1
            eta = torch.where(halve, eta / 2, eta)
            restart = halve.view(-1, 1, 1, 1)
            x, grad, loss = torch.where(restart, x_max, x), torch.where(restart, grad_max, grad), \
                torch.where(halve, loss_max, loss)
    return ApgdRun(x, x_max, loss_max, torch.stack(step_sizes))


def reduced_eps_stages(steps: int) -> list[tuple[float, int]]:
    """(radius multiple, steps) of SEA's schedule for ``steps`` in all; stages with no step are dropped.
    The last stage (radius ε) always has at least one step."""
    first = [int(share * steps) for _, share in REDUCED_EPS_STAGES[:-1]]
    counts = [*first, steps - sum(first)]
    return [(radius, n) for (radius, _), n in zip(REDUCED_EPS_STAGES, counts, strict=True) if n > 0]


class APGD(IterativeAttack):
    """APGD on a segmentation loss (``ce``, ``mce``, ``bmce``, ``js`` or ``msph``): name ``apgd-LOSS[-red]``, label
    ``NAME-N`` (reports build a record's column from its attack name and steps).

    ``steps`` N: gradient evaluations per image (plus one forward pass per stage). Parameter-free: the step
    size starts at 2ε and adapts. ``reduced_eps``: SEA's 2ε → 1.5ε → ε schedule. Returns, per image, the
    iterate with the fewest correct labelled pixels.
    """

    name = "apgd"

    def __init__(self, eps: float = 8.0, steps: int = 100, loss: str = "ce", reduced_eps: bool = False) -> None:
        super().__init__(eps, steps)
        if loss not in SEGMENTATION_LOSSES:
            raise HarnessError(f"unknown apgd loss {loss!r}; choose from: {', '.join(SEGMENTATION_LOSSES)}")
        self.loss = loss
        self.reduced_eps = bool(reduced_eps)
        self.name = f"apgd-{loss}" + ("-red" if self.reduced_eps else "")

    def params(self) -> dict[str, Any]:
        return {"eps": self.eps, "steps": self.steps, "loss": self.loss, "reduced_eps": self.reduced_eps,
                "momentum": MOMENTUM, "rho": RHO}

    def _perturb(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        loss_fn = SEGMENTATION_LOSSES[self.loss]
        by_accuracy = self.loss in ACCURACY_SCHEDULED

        def evaluate(x: torch.Tensor, with_gradient: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
            grad: torch.Tensor | None = None
            if with_gradient:
                point = loss_and_gradient(model, x, labels, loss_fn)
                logits, loss, grad = point.logits, point.loss, point.grad
            else:
                logits = forward(model, x)
                loss = loss_fn(logits, labels)
            correct = correct_pixels(logits, labels)
            return (-correct.float() if by_accuracy else loss), grad, correct

        eps = self.eps / 255
        noise = torch.rand(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        x = images + (2 * noise - 1) * eps
        stages = reduced_eps_stages(self.steps) if self.reduced_eps else [(1.0, self.steps)]
        best = BestIterate()
        for index, (radius, steps) in enumerate(stages):
            low, high = linf_box(images, radius * eps)
            final = index == len(stages) - 1
            run = run_apgd(evaluate, torch.clamp(x, low, high), low, high, radius * eps, steps,
                           best if final else None)
            x = run.x_max
        return best.result()
