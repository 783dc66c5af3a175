"""Finding non-finite values in a model's tensors (a diverged training run, a corrupt weight file)."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def first_non_finite(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first floating-point tensor holding NaN or an infinity, else None.

    One flag per tensor, read back once: on a GPU a read-back per tensor would be a device sync per tensor.
    """
    floats = [(name, t) for name, t in named_tensors if t.is_floating_point() or t.is_complex()]
    if not floats:
        return None
    finite = torch.stack([torch.isfinite(t).all().to(floats[0][1].device) for _, t in floats])
    if bool(finite.all()):
        return None
    return floats[int((~finite).nonzero()[0])][0]
