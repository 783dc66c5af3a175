"""FGSM (Goodfellow et al. 2015), the paper's eq. (2): one step of size ε along the gradient's sign."""

from __future__ import annotations

import torch
from torch import nn

from harness.attacks.base import Attack, input_gradient, linf_box


class FGSM(Attack):
    """x' = clip₀₁(x + ε · sign(∇ₓ L(f(x), y)))."""

    name = "fgsm"

    def _perturb(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        eps = self.eps / 255
        low, high = linf_box(images, eps)
        grad = input_gradient(model, images, labels)
        return torch.clamp(images + eps * grad.sign(), low, high)
