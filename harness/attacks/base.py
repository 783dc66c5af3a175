"""The white-box attack interface: a public call that checks and measures, a private algorithm.

``Attack.__call__`` validates the batch, the ε range and the model's mode, seeds a private
random generator, times the run and returns an :class:`AttackResult`. Subclasses implement
only ``_perturb``: the algorithm of the paper, in [0, 1] pixel units.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from harness.attacks.loss import pixel_cross_entropy
from harness.data.base import IGNORE_INDEX
from harness.errors import HarnessError


@dataclass
class AttackResult:
    """Adversarial images float32 (N, 3, H, W) in [0, 1], on the input's device, detached.

    ``queries``: forward+backward passes of single images (N × iterations); ``seconds``: wall time.
    """

    images: torch.Tensor
    iterations: int
    queries: int
    seconds: float


def _on_pixel_scale(name: str, value: float) -> float:
    if not 0 < value <= 255:  # also rejects NaN
        raise HarnessError(f"{name} {value} is outside (0, 255]; it is on the 0-255 pixel scale (8 means 8/255)")
    return float(value)


def check_eps(eps: float) -> float:
    """ε on the 0-255 pixel scale; must lie in (0, 255]."""
    return _on_pixel_scale("eps", eps)


def check_alpha(alpha: float) -> float:
    """A step size on the 0-255 scale; must lie in (0, 255]."""
    return _on_pixel_scale("alpha", alpha)


def check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise HarnessError(f"steps must be an integer >= 1, got {steps!r}")
    return steps


def check_batch(images: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> None:
    """images float32 (N, 3, H, W) in [0, 1]; labels int64 (N, H, W) on the same device, with values
    in 0..num_classes-1 (any value below 255 when ``num_classes`` is None) or 255."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.float32 or images.ndim != 4 \
            or images.shape[1] != 3 or images.shape[0] == 0:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        dtype = images.dtype if isinstance(images, torch.Tensor) else ""
        raise HarnessError(f"images must be float32 (N, 3, H, W) with N >= 1, got {dtype} {shape}")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 \
            or tuple(labels.shape) != (images.shape[0], *images.shape[2:]):
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise HarnessError(f"labels must be int64 (N, H, W) = {(images.shape[0], *images.shape[2:])}, got {shape}")
    if labels.device != images.device:
        raise HarnessError(f"images are on {images.device} but labels on {labels.device}")
    if bool(images.min() < 0) or bool(images.max() > 1) or bool(images.isnan().any()):
        raise HarnessError("images must have values in [0, 1]")
    limit = IGNORE_INDEX if num_classes is None else num_classes
    if bool(((labels < 0) | ((labels >= limit) & (labels != IGNORE_INDEX))).any()):
        classes = "class indices" if num_classes is None else f"class indices 0..{num_classes - 1}"
        raise HarnessError(f"labels must be {classes} or {IGNORE_INDEX} (ignore)")


def check_model(model: nn.Module, device: torch.device) -> None:
    """The model must be in eval mode (dropout off, BatchNorm statistics frozen) and on ``device``."""
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise HarnessError(f"the model must be in eval mode (call model.eval()); in training mode: {training[0]}")
    param = next(model.parameters(), None)
    if param is not None and param.device != device:
        raise HarnessError(f"the model is on {param.device} but the images on {device}")


def linf_box(images: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel lower and upper bounds of the L∞ ball of radius ``eps`` ([0, 1] units) around
    ``images``, intersected with [0, 1]: ``adv.clamp(low, high)`` projects onto both at once."""
    return (images - eps).clamp_(min=0.0), (images + eps).clamp_(max=1.0)


class Attack(ABC):
    """An untargeted L∞ attack with radius ``eps`` on the 0-255 scale (8 means 8/255)."""

    name: ClassVar[str]

    def __init__(self, eps: float = 8.0) -> None:
        self.eps = check_eps(eps)

    @property
    def iterations(self) -> int:
        """Forward+backward passes per image."""
        return 1

    @property
    def label(self) -> str:
        """Short column name, e.g. ``fgsm`` or ``pgd-20``."""
        return self.name

    def params(self) -> dict[str, Any]:
        """What identifies this attack in results and saved examples (JSON-serialisable, 0-255 scale)."""
        return {"eps": self.eps}

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 seed: int = 0) -> AttackResult:
        """Attack ``model`` (eval mode; never modified) on a batch.

        ``images`` float32 (N, 3, H, W) in [0, 1]; ``labels`` int64 (N, H, W), 255 ignored.
        Deterministic for a given seed, batch and device. Raises HarnessError on bad input.
        """
        check_batch(images, labels, getattr(model, "num_classes", None))
        check_model(model, images.device)
        generator = torch.Generator(device=images.device)
        generator.manual_seed(seed)
        start = time.perf_counter()
        # Clones: tensors made under inference_mode cannot take part in autograd.
        with torch.inference_mode(False), torch.enable_grad():
            adv = self._perturb(model, images.detach().clone(), labels.clone(), generator)
        if adv.is_cuda:
            torch.cuda.synchronize(adv.device)
        seconds = time.perf_counter() - start
        return AttackResult(adv.detach(), self.iterations, self.iterations * len(images), seconds)

    @abstractmethod
    def _perturb(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        """The algorithm: adversarial images within ε of ``images`` and in [0, 1]."""


class IterativeAttack(Attack):
    """An attack of ``steps`` iterations (an integer >= 1): ``iterations`` is ``steps`` and the label
    ``NAME-STEPS``, the column reports build from a record's attack name and steps (``pgd-20``).

    ``keep_best`` (for the subclasses that offer it): return, per image, the iterate with the fewest correct
    pixels instead of the last; the attack is then named ``NAME-best`` (so its column is ``NAME-best-STEPS``,
    never the plain attack's) and its params say ``keep_best: true``.
    """

    def __init__(self, eps: float = 8.0, steps: int = 20, keep_best: bool = False) -> None:
        super().__init__(eps)
        self.steps = check_steps(steps)
        self.keep_best = bool(keep_best)
        if self.keep_best:
            self.name = f"{self.name}-best"

    def _with_keep_best(self, params: dict[str, Any]) -> dict[str, Any]:
        return params | ({"keep_best": True} if self.keep_best else {})

    @property
    def iterations(self) -> int:
        return self.steps

    @property
    def label(self) -> str:
        return f"{self.name}-{self.steps}"


def input_gradient(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """∇ₓ of the summed per-image pixel cross entropy; parameters' ``.grad`` stay untouched.

    Summing per-image means keeps each image's gradient independent of its batch; only
    ``x`` is an autograd input, so no parameter gradient is computed or accumulated. The labels
    were checked once by ``Attack.__call__``: the loop does not re-check them (no device sync).
    """
    x = x.detach().requires_grad_(True)
    loss = pixel_cross_entropy(model(x), labels, validate=False).sum()
    (grad,) = torch.autograd.grad(loss, x)
    return grad
