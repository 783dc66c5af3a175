"""PGD (Madry et al. 2018), the paper's eq. (3): iterated FGSM steps from a random start in the ε-ball."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness.attacks.base import IterativeAttack, check_alpha, linf_box
from harness.attacks.best_iterate import BestIterate, ce_gradient, final_iterate


def default_pgd_alpha(eps: float) -> float:
    """Step size on the 0-255 scale when none is given: ε / 4, whatever the number of steps.

    2/255 at ε = 8, the step of Madry et al.'s CIFAR-10 evaluation. Being independent of
    ``steps``, PGD-100 continues PGD-20's walk (same seed, same first 20 iterates) instead of
    taking a different, finer one; the paper's Figure 3 sweep sets α = ε / steps explicitly.
    """
    return eps / 4


class PGD(IterativeAttack):
    """x'₀ = x + U(-ε, ε); x'ₜ₊₁ = Π_{x,ε}(x'ₜ + α · sign(∇ₓ L(f(x'ₜ), y))); returns the last iterate.

    ``eps`` and ``alpha`` on the 0-255 scale; ``alpha`` defaults to :func:`default_pgd_alpha`.
    ``keep_best``: return, per image, the iterate x'₀..x'_T with the fewest correct labelled pixels instead
    (same iterates; one extra forward pass for x'_T; name ``pgd-best``, label ``pgd-best-N``).
    """

    name = "pgd"

    def __init__(self, eps: float = 8.0, steps: int = 20, alpha: float | None = None,
                 random_start: bool = True, keep_best: bool = False) -> None:
        super().__init__(eps, steps, keep_best)
        self.alpha = default_pgd_alpha(self.eps) if alpha is None else check_alpha(alpha)
        self.random_start = random_start

    def params(self) -> dict[str, Any]:
        params = {"eps": self.eps, "steps": self.steps, "alpha": self.alpha, "random_start": self.random_start}
        return self._with_keep_best(params)

    def _perturb(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        eps, alpha = self.eps / 255, self.alpha / 255
        low, high = linf_box(images, eps)
        adv = images
        if self.random_start:
            noise = torch.rand(images.shape, generator=generator, device=images.device, dtype=images.dtype)
            adv = torch.clamp(images + (2 * noise - 1) * eps, low, high)
        best = BestIterate() if self.keep_best else None
        for _ in range(self.steps):
            grad = ce_gradient(model, adv, labels, best)
            adv = torch.clamp(adv + alpha * grad.sign(), low, high)
        return final_iterate(model, adv, labels, best)

