"""MI-FGSM (Dong et al. 2018), the paper's eqs. (4) and (5): iterative FGSM with L1-normalised momentum."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness.attacks.base import IterativeAttack, check_alpha, linf_box
from harness.attacks.best_iterate import BestIterate, ce_gradient, final_iterate
from harness.errors import HarnessError


class MIFGSM(IterativeAttack):
    """gₜ₊₁ = μ gₜ + ∇ₓL / ‖∇ₓL‖₁ (per image); x'ₜ₊₁ = Π_{x,ε}(x'ₜ + α · sign(gₜ₊₁)), x'₀ = x.

    ``eps`` and ``alpha`` on the 0-255 scale; ``alpha`` defaults to ε / steps as in Dong et al.
    ``decay`` is μ (the paper uses 1.0). ``keep_best``: return, per image, the iterate x'₀..x'_T with the
    fewest correct labelled pixels instead of the last (one extra forward pass; name ``mifgsm-best``, label
    ``mifgsm-best-N``).
    """

    name = "mifgsm"

    def __init__(self, eps: float = 8.0, steps: int = 20, decay: float = 1.0, alpha: float | None = None,
                 keep_best: bool = False) -> None:
        super().__init__(eps, steps, keep_best)
        if not 0 <= decay < float("inf"):
            raise HarnessError(f"decay {decay} must be a finite number >= 0")
        self.decay = float(decay)
        self.alpha = self.eps / self.steps if alpha is None else check_alpha(alpha)

    def params(self) -> dict[str, Any]:
        params = {"eps": self.eps, "steps": self.steps, "decay": self.decay, "alpha": self.alpha}
        return self._with_keep_best(params)

    def _perturb(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        eps, alpha = self.eps / 255, self.alpha / 255
        low, high = linf_box(images, eps)
        adv = images
        momentum = torch.zeros_like(images)
        best = BestIterate() if self.keep_best else None
        for _ in range(self.steps):
            grad = ce_gradient(model, adv, labels, best)
            # An all-zero gradient (no labelled pixel) stays zero instead of dividing by zero.
            l1 = grad.abs().flatten(1).sum(1).clamp(min=1e-12).view(-1, 1, 1, 1)
            momentum = self.decay * momentum + grad / l1
            adv = torch.clamp(adv + alpha * momentum.sign(), low, high)
        return final_iterate(model, adv, labels, best)
