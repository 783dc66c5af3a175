"""PGD on a segmentation-specific loss: the template SegPGD and CosPGD fill with their pixel weighting."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torch import nn

from harness.attacks.base import IterativeAttack, check_alpha, linf_box
from harness.attacks.best_iterate import BestIterate, final_iterate
from harness.attacks.gradient import loss_and_gradient
from harness.attacks.pgd import default_pgd_alpha


class LossPGD(IterativeAttack):
    """x'₀ = x + U(-ε, ε); x'ₜ = Π_{x,ε}(x'ₜ₋₁ + α · sign(∇ₓ Lₜ(f(x'ₜ₋₁), y))), t = 1..T.

    The same walk as :class:`~harness.attacks.pgd.PGD` (same random start, same default α = ε / 4) with the
    loss ``Lₜ`` of :meth:`_loss` at step t. Returns the last iterate, or with ``keep_best`` per image the
    iterate x'₀..x'_T with the fewest correct labelled pixels (one extra forward pass; name ``NAME-best``).
    """

    def __init__(self, eps: float = 8.0, steps: int = 20, alpha: float | None = None,
                 keep_best: bool = False) -> None:
        super().__init__(eps, steps, keep_best)
        self.alpha = default_pgd_alpha(self.eps) if alpha is None else check_alpha(alpha)

    def params(self) -> dict[str, Any]:
        params = {"eps": self.eps, "steps": self.steps, "alpha": self.alpha}
        return self._with_keep_best(params)

    @abstractmethod
    def _loss(self, logits: torch.Tensor, labels: torch.Tensor, step: int) -> torch.Tensor:
        """Per-image loss (N,) to ascend at step ``step`` (1..T)."""

    def _perturb(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        eps, alpha = self.eps / 255, self.alpha / 255
        low, high = linf_box(images, eps)
        noise = torch.rand(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        adv = torch.clamp(images + (2 * noise - 1) * eps, low, high)
        best = BestIterate() if self.keep_best else None
        for step in range(1, self.steps + 1):
            point = loss_and_gradient(model, adv, labels, lambda z, y, t=step: self._loss(z, y, t))
            if best is not None:
                best.update_from_logits(adv, point.logits, labels)
            adv = torch.clamp(adv + alpha * point.grad.sign(), low, high)
        return final_iterate(model, adv, labels, best)
