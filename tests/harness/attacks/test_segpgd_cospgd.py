"""SegPGD, CosPGD and the best-iterate option of the PGD-like attacks, on a trained reduced model (their
contracts, which every white-box attack keeps: test_whitebox_attacks.py; fixtures: conftest.py)."""

import pytest
import torch

from harness.attacks import MIFGSM, PGD, CosPGD, SegPGD, pixel_cross_entropy
from harness.attacks.best_iterate import correct_pixels
from harness.attacks.losses import cospgd_loss, segpgd_lambda, segpgd_loss
from harness.errors import HarnessError


def _correct(model, images, labels):
    with torch.no_grad():
        return correct_pixels(model(images), labels)


@pytest.mark.parametrize("make", [
    lambda best: PGD(8, 6, keep_best=best), lambda best: MIFGSM(8, 6, keep_best=best),
    lambda best: SegPGD(8, 6, keep_best=best), lambda best: CosPGD(8, 6, keep_best=best),
], ids=["pgd", "mifgsm", "segpgd", "cospgd"])
def test_the_best_iterate_is_never_worse_than_the_last(model, batch, make):
    """Same seed, same iterates: the kept image has, image by image, at most the last iterate's correct pixels."""
    images, labels = batch
    last = _correct(model, make(False)(model, images, labels, seed=4).images, labels)
    best = _correct(model, make(True)(model, images, labels, seed=4).images, labels)
    assert (best <= last).all()


def test_one_step_best_is_the_start_or_the_step(model, batch):
    """PGD-1-best chooses, per image, between x'₀ (the random start) and x'₁ (the last iterate)."""
    images, labels = batch
    last = PGD(8, 1)(model, images, labels, seed=2).images
    best = PGD(8, 1, keep_best=True)(model, images, labels, seed=2).images
    start = PGD(8, 1, alpha=1e-9)(model, images, labels, seed=2).images  # a step of ~0: the start itself
    for i in range(len(images)):
        assert torch.equal(best[i], last[i]) or torch.allclose(best[i], start[i], atol=1e-8)


def test_the_losses_the_steps_use(model, batch):
    images, labels = batch
    with torch.no_grad():
        logits = model(images)
    attack = SegPGD(8, 4)
    for t in range(1, 5):
        assert torch.equal(attack._loss(logits, labels, t), segpgd_loss(logits, labels, segpgd_lambda(t, 4)))
    assert torch.equal(CosPGD(8, 4)._loss(logits, labels, 2), cospgd_loss(logits, labels))


def test_defaults_labels_and_errors():
    assert SegPGD().params() == {"eps": 8.0, "steps": 20, "alpha": 2.0}
    assert CosPGD(8, 7, keep_best=True).label == "cospgd-best-7"
    assert SegPGD(8, 50, keep_best=True).params()["keep_best"] is True
    # The paper's PGD and MI-FGSM keep the last iterate by default: labels and parameters unchanged.
    assert PGD().label == "pgd-20" and "keep_best" not in PGD().params()
    assert MIFGSM().label == "mifgsm-20" and "keep_best" not in MIFGSM().params()
    assert PGD(keep_best=True).label == "pgd-best-20" and MIFGSM(keep_best=True).label == "mifgsm-best-20"
    with pytest.raises(HarnessError, match="steps must be"):
        SegPGD(8, 0)
    with pytest.raises(HarnessError, match="alpha"):
        CosPGD(8, 5, alpha=-1)


def test_the_default_pgd_walk_is_the_papers(model, batch):
    """pgd-N keeps the paper's eq. (3) exactly (the CI gate compares Table 1 at tolerance 0): a hand-written
    loop with the same random start gives the same bits."""
    images, labels = batch
    eps, alpha = 8 / 255, 2 / 255
    generator = torch.Generator().manual_seed(11)
    noise = torch.rand(images.shape, generator=generator)
    low, high = (images - eps).clamp(min=0), (images + eps).clamp(max=1)
    adv = torch.clamp(images + (2 * noise - 1) * eps, low, high)
    for _ in range(3):
        x = adv.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(pixel_cross_entropy(model(x), labels).sum(), x)
        adv = torch.clamp(adv + alpha * grad.sign(), low, high)
    assert torch.equal(PGD(8, 3)(model, images, labels, seed=11).images, adv)
