"""One forward and backward pass of a per-image loss: its value, its input gradient and the logits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LossAtPoint:
    """``loss`` float (N,), detached; ``grad`` ∇ₓ of ``loss.sum()`` (N, 3, H, W); ``logits`` detached."""

    loss: torch.Tensor
    grad: torch.Tensor
    logits: torch.Tensor


def loss_and_gradient(model: nn.Module, x: torch.Tensor, labels: torch.Tensor,
                      loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> LossAtPoint:
    """Evaluate ``loss_fn(model(x), labels)`` (per image, (N,)) and its gradient with respect to ``x``.

    Only ``x`` is an autograd input: parameters get no ``.grad``. The per-image losses are summed, so each
    image's gradient is its own loss's.
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)
    loss = loss_fn(logits, labels)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return LossAtPoint(loss.detach(), grad, logits.detach())


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits at ``x`` without building a graph (for the iterate no step follows)."""
    with torch.no_grad():
        return model(x)
