"""SegPGD (Gu et al. 2022): PGD whose loss moves from the correct pixels towards all of them."""

from __future__ import annotations

import torch

from harness.attacks.loss_pgd import LossPGD
from harness.attacks.losses import segpgd_lambda, segpgd_loss


class SegPGD(LossPGD):
    """Step t of T ascends (1/n) [(1 − λₜ) Σ_correct CEᵢ + λₜ Σ_wrong CEᵢ], λₜ = (t − 1) / (2T).

    Early steps push only the pixels still classified correctly; later ones also keep the wrong ones wrong.
    """

    name = "segpgd"

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor, step: int) -> torch.Tensor:
        return segpgd_loss(logits, labels, segpgd_lambda(step, self.steps))
