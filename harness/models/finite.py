"""Finding non-finite values in a model's tensors (a diverged training run, a corrupt weight file)."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def first_non_finite(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first floating-point tensor holding NaN or an infinity, else None."""
    for name, tensor in named_tensors:
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            return name
    return None
