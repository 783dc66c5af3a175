"""The segmentation attacks' objectives: per-image losses to maximise, and per-pixel weightings.

Every loss takes ``logits`` float (N, K, H, W) and ``labels`` int64 (N, H, W) (values 0..K-1, or 255:
ignored) and returns float (N,): one value per image, so an image's gradient never depends on its batch.
Ignored pixels contribute nothing. Each loss is a mean over the image's *labelled* pixels (a fixed divisor,
so values of one image stay comparable across iterations even when a mask changes); an image whose pixels
are all ignored has loss 0. Masks and weights are computed from the logits but detached: they select and
scale pixels, the gradient flows only through each pixel's own cross entropy (or divergence). Labels are
not re-checked here (``Attack.__call__`` checks them once).

- ``ce``: (1/n) Σᵢ CEᵢ, n = labelled pixels (the paper's eq. 6, :func:`pixel_cross_entropy`).
- ``mce``: (1/n) Σᵢ 1[argmax zᵢ = yᵢ] CEᵢ: only pixels still correct push (Croce et al. 2024's masked CE).
- ``bmce``: (1/|C|) Σ_{c∈C} (1/n_c) Σ_{i: yᵢ=c} 1[correct] CEᵢ, C = classes present in the image, n_c = its
  labelled pixels of class c: masked CE with each class weighted equally (small classes count, as in mIoU).
- ``js``: (1/n) Σᵢ JS(softmax(zᵢ) ‖ e_{yᵢ}) in nats; it is bounded by ln 2 and flat once a pixel is wrong,
  so it masks by itself. With p = p_y: JS = ln 2 + ½ (p ln p − (1 + p) ln(1 + p)).
- ``msph``: (1/n) Σᵢ 1[correct] (−z_{yᵢ} / ‖zᵢ‖₂): the label's logit on the unit sphere, pushed down at the
  still-correct pixels (SEA's masked spherical loss). Scale-free, so one over-confident pixel cannot dominate the
  gradient as its cross entropy does; the gradient flows through the normalisation.
- SegPGD (Gu et al. 2022): (1/n) [(1 − λ) Σ_correct CEᵢ + λ Σ_wrong CEᵢ], λ(t) = (t − 1) / (2T), t = 1..T.
- CosPGD (Agnihotri et al. 2023): (1/n) Σᵢ cos(softmax(zᵢ), e_{yᵢ}) CEᵢ, cos = p_y / ‖softmax(zᵢ)‖₂.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from harness.attacks.loss import labelled_pixel_mean, pixel_cross_entropy
from harness.data.base import IGNORE_INDEX

PixelLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def correct_mask(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """bool (N, H, W): labelled pixels whose predicted class is their label."""
    return (logits.detach().argmax(1) == labels) & (labels != IGNORE_INDEX)


def _at_label(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N, H, W): each pixel's entry of ``values`` (N, K, H, W) at its label (class 0's at ignored pixels, which
    the caller masks)."""
    return values.gather(1, torch.where(labels != IGNORE_INDEX, labels, 0).unsqueeze(1)).squeeze(1)


def ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean pixel cross entropy per image."""
    return pixel_cross_entropy(logits, labels, validate=False)


def mce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy of the still-correct pixels, over the image's labelled-pixel count."""
    return pixel_cross_entropy(logits, labels, validate=False, weights=correct_mask(logits, labels).float())


def class_balance_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """float (N, H, W): n / (|C| · n_{yᵢ}) at labelled pixels, 0 at ignored ones (n, C, n_c as in ``bmce``).

    Scaled so that a mean over the n labelled pixels of weight · value is the mean over present classes of
    each class's mean value.
    """
    valid = labels != IGNORE_INDEX
    flat = torch.where(valid, labels, 0).flatten(1)
    counts = torch.zeros(labels.shape[0], num_classes, device=labels.device)
    counts.scatter_add_(1, flat, valid.flatten(1).float())
    present = (counts > 0).sum(1, keepdim=True).clamp(min=1)
    per_pixel = counts.gather(1, flat).clamp(min=1)
    n = valid.flatten(1).sum(1, keepdim=True)
    return torch.where(valid.flatten(1), n / (present * per_pixel), 0.0).view_as(labels)


def bmce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Class-balanced masked cross entropy: the mean over present classes of the class's masked CE."""
    weights = class_balance_weights(labels, logits.shape[1]) * correct_mask(logits, labels)
    return pixel_cross_entropy(logits, labels, validate=False, weights=weights)


def js(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean Jensen-Shannon divergence (nats) between each pixel's softmax and its one-hot label."""
    valid = labels != IGNORE_INDEX
    log_p = _at_label(torch.log_softmax(logits, 1), labels)
    p = log_p.exp()
    divergence = math.log(2) + 0.5 * (p * log_p - (1 + p) * torch.log1p(p))
    return labelled_pixel_mean(torch.where(valid, divergence, 0.0), labels)


def msph(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Masked spherical loss: minus the label's L2-normalised logit at still-correct pixels, over the image's
    labelled-pixel count; in [-1, 1]. A pixel whose logits are all 0 counts 0."""
    cosine = _at_label(logits, labels) / logits.norm(dim=1).clamp(min=1e-12)
    return labelled_pixel_mean(torch.where(correct_mask(logits, labels), -cosine, 0.0), labels)


SEGMENTATION_LOSSES: dict[str, PixelLoss] = {"ce": ce, "mce": mce, "bmce": bmce, "js": js, "msph": msph}


def segpgd_lambda(step: int, steps: int) -> float:
    """SegPGD's λ(t) = (t − 1) / (2T) for step t = 1..T: 0 (correct pixels only) rising towards ½."""
    if not 1 <= step <= steps:
        raise ValueError(f"step {step} is outside 1..{steps}")
    return (step - 1) / (2 * steps)


def segpgd_loss(logits: torch.Tensor, labels: torch.Tensor, lam: float) -> torch.Tensor:
    """(1/n) [(1 − λ) Σ_correct CEᵢ + λ Σ_wrong CEᵢ] per image, λ in [0, 1]."""
    correct = correct_mask(logits, labels).float()
    return pixel_cross_entropy(logits, labels, validate=False, weights=(1 - lam) * correct + lam * (1 - correct))


def cosine_to_label(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """float (N, H, W), detached: cos(softmax(zᵢ), e_{yᵢ}) = p_{yᵢ} / ‖softmax(zᵢ)‖₂, 0 at ignored pixels."""
    valid = labels != IGNORE_INDEX
    probs = torch.softmax(logits.detach(), 1)
    return torch.where(valid, _at_label(probs, labels) / probs.norm(dim=1), 0.0)


def cospgd_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(1/n) Σᵢ cos(softmax(zᵢ), e_{yᵢ}) CEᵢ per image: pixels still confidently right weigh most."""
    return pixel_cross_entropy(logits, labels, validate=False, weights=cosine_to_label(logits, labels))
