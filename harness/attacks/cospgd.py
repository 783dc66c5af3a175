"""CosPGD (Agnihotri et al. 2023): PGD on the pixel cross entropies weighted by the prediction's agreement."""

from __future__ import annotations

import torch

from harness.attacks.loss_pgd import LossPGD
from harness.attacks.losses import cospgd_loss


class CosPGD(LossPGD):
    """Each step ascends (1/n) Σᵢ cos(softmax(zᵢ), e_{yᵢ}) CEᵢ (the cosine detached, recomputed every step).

    Pixels the model still predicts confidently right weigh most; pixels already wrong fade out smoothly.
    """

    name = "cospgd"

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor, step: int) -> torch.Tensor:
        return cospgd_loss(logits, labels)
