"""The segmentation losses against values computed by hand, and the contracts every loss keeps."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.attacks import pixel_cross_entropy
from harness.attacks.best_iterate import correct_pixels
from harness.attacks.losses import (
    SEGMENTATION_LOSSES,
    bmce,
    ce,
    class_balance_weights,
    correct_mask,
    cosine_to_label,
    cospgd_loss,
    js,
    mce,
    msph,
    segpgd_lambda,
    segpgd_loss,
)
from harness.data.base import IGNORE_INDEX

# One image, two classes, four pixels: right (label 0), wrong (label 0), ignored, right (label 1).
LOGITS = torch.tensor([[[[2.0, 0.0, 5.0, 0.0]], [[0.0, 1.0, -5.0, 3.0]]]])  # (1, 2, 1, 4)
LABELS = torch.tensor([[[0, 0, IGNORE_INDEX, 1]]])
CE_RIGHT0, CE_WRONG, CE_RIGHT1 = math.log1p(math.exp(-2)), math.log1p(math.exp(1)), math.log1p(math.exp(-3))
P_LABEL = [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1)), 1 / (1 + math.exp(-3))]  # softmax at the label


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def _js_by_definition(p_label: float) -> float:
    """½ KL(P ‖ M) + ½ KL(Q ‖ M), M = (P + Q) / 2, Q the one-hot label, two classes."""
    p, q = [p_label, 1 - p_label], [1.0, 0.0]
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]
    return 0.5 * _kl(p, m) + 0.5 * _kl(q, m)


def _batch(seed: int = 0, n: int = 3, k: int = 5, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, size, size, generator=g) * 3
    labels = torch.randint(0, k, (n, size, size), generator=g)
    labels[torch.rand(n, size, size, generator=g) < 0.3] = IGNORE_INDEX
    return logits, labels


def test_masks_and_counts_by_hand():
    assert correct_mask(LOGITS, LABELS).tolist() == [[[True, False, False, True]]]
    assert correct_pixels(LOGITS, LABELS).tolist() == [2]
    # n = 3 labelled pixels; class 0 has 2 of them, class 1 one; |C| = 2: weight n / (|C| n_c).
    torch.testing.assert_close(class_balance_weights(LABELS, 2), torch.tensor([[[0.75, 0.75, 0.0, 1.5]]]))


@pytest.mark.parametrize(("loss", "expected"), [
    (ce, (CE_RIGHT0 + CE_WRONG + CE_RIGHT1) / 3),
    (mce, (CE_RIGHT0 + CE_RIGHT1) / 3),  # the wrong pixel drops out; the divisor stays 3
    (bmce, 0.5 * (CE_RIGHT0 / 2 + CE_RIGHT1 / 1)),  # the mean over classes of each class's masked mean
    (js, sum(_js_by_definition(p) for p in P_LABEL) / 3),
    (cospgd_loss, sum(p / math.hypot(p, 1 - p) * c for p, c in zip(P_LABEL, (CE_RIGHT0, CE_WRONG, CE_RIGHT1),
                                                                   strict=True)) / 3),
    # Only the two right pixels count: minus the label's logit over the logit vector's length, over 3.
    (msph, -(2.0 / math.hypot(2.0, 0.0) + 3.0 / math.hypot(0.0, 3.0)) / 3),
], ids=["ce", "mce", "bmce", "js", "cospgd", "msph"])
def test_values_by_hand(loss, expected):
    value = loss(LOGITS, LABELS)
    assert value.shape == (1,)
    assert value.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.5, 1.0])
def test_segpgd_loss_by_hand(lam):
    expected = ((1 - lam) * (CE_RIGHT0 + CE_RIGHT1) + lam * CE_WRONG) / 3
    assert segpgd_loss(LOGITS, LABELS, lam).item() == pytest.approx(expected, rel=1e-6)


def test_segpgd_lambda_schedule():
    assert [segpgd_lambda(t, 4) for t in range(1, 5)] == [0.0, 0.125, 0.25, 0.375]
    assert segpgd_lambda(1, 1) == 0.0
    for bad in (0, 5):
        with pytest.raises(ValueError, match="outside 1..4"):
            segpgd_lambda(bad, 4)


def test_cosine_to_label_by_hand():
    expected = [P_LABEL[0] / math.hypot(P_LABEL[0], 1 - P_LABEL[0]),
                P_LABEL[1] / math.hypot(P_LABEL[1], 1 - P_LABEL[1]), 0.0,
                P_LABEL[2] / math.hypot(P_LABEL[2], 1 - P_LABEL[2])]
    torch.testing.assert_close(cosine_to_label(LOGITS, LABELS)[0, 0], torch.tensor(expected))


def test_js_limits():
    confident = torch.tensor([[[[30.0]], [[-30.0]]]])
    assert js(confident, torch.tensor([[[0]]])).item() == pytest.approx(0.0, abs=1e-6)  # right: 0
    assert js(confident, torch.tensor([[[1]]])).item() == pytest.approx(math.log(2), rel=1e-6)  # wrong: ln 2


ALL_LOSSES = {**SEGMENTATION_LOSSES, "segpgd": lambda z, y: segpgd_loss(z, y, 0.3), "cospgd": cospgd_loss}


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_ignored_pixels_do_not_count(name):
    loss = ALL_LOSSES[name]
    logits, labels = _batch()
    ignored = (labels == IGNORE_INDEX).unsqueeze(1).expand_as(logits)
    changed = logits.clone()
    changed[ignored] = torch.randn(int(ignored.sum()), generator=torch.Generator().manual_seed(1)) * 100
    torch.testing.assert_close(loss(changed, labels), loss(logits, labels), rtol=0, atol=0)
    logits.requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(logits, labels).sum(), logits)
    assert grad[ignored].abs().max() == 0


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_each_image_is_independent_of_its_batch(name):
    loss = ALL_LOSSES[name]
    logits, labels = _batch(n=4)
    together = loss(logits, labels)
    alone = torch.cat([loss(logits[i:i + 1], labels[i:i + 1]) for i in range(4)])
    assert together.shape == (4,)
    torch.testing.assert_close(together, alone)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_an_image_without_labelled_pixels_has_zero_loss_and_gradient(name):
    loss = ALL_LOSSES[name]
    logits, labels = _batch(n=2)
    labels[1] = IGNORE_INDEX
    logits.requires_grad_(True)
    value = loss(logits, labels)
    (grad,) = torch.autograd.grad(value.sum(), logits)
    assert value[1] == 0 and torch.isfinite(value).all() and grad[1].abs().max() == 0
    assert torch.isfinite(grad).all()


def test_msph_by_hand_off_the_axes():
    # Logits (3, 4) and (1, -1, 2) at one right pixel each; the label's logit over the vector's length.
    two = torch.tensor([[[[3.0]], [[4.0]]]])
    assert msph(two, torch.tensor([[[1]]])).item() == pytest.approx(-4 / 5, rel=1e-6)
    assert msph(two, torch.tensor([[[0]]])).item() == 0.0  # wrong: masked out
    three = torch.tensor([[[[1.0]], [[-1.0]], [[2.0]]]])
    assert msph(three, torch.tensor([[[2]]])).item() == pytest.approx(-2 / math.sqrt(6), rel=1e-6)
    # Scale-free: the same direction, any length, the same value.
    assert msph(100 * three, torch.tensor([[[2]]])).item() == pytest.approx(-2 / math.sqrt(6), rel=1e-6)


def test_msph_gradient_flows_through_the_normalisation():
    # d/dz of -z_y/‖z‖ at z = (3, 4), y = 1: -(e_y ‖z‖² − z_y z) / ‖z‖³ = -(-12, 9) / 125.
    logits = torch.tensor([[[[3.0]], [[4.0]]]], requires_grad=True)
    (grad,) = torch.autograd.grad(msph(logits, torch.tensor([[[1]]])).sum(), logits)
    torch.testing.assert_close(grad.flatten(), torch.tensor([12 / 125, -9 / 125]))


def test_msph_of_all_zero_logits_is_finite():
    logits = torch.zeros(1, 3, 2, 2, requires_grad=True)
    value = msph(logits, torch.zeros(1, 2, 2, dtype=torch.int64))  # argmax 0 = label: right, but no direction
    (grad,) = torch.autograd.grad(value.sum(), logits)
    assert value.item() == 0.0 and torch.isfinite(grad).all()


@pytest.mark.parametrize("name", ["mce", "bmce", "msph"])
def test_masked_losses_do_not_push_wrong_pixels(name):
    logits, labels = _batch()
    logits.requires_grad_(True)
    (grad,) = torch.autograd.grad(SEGMENTATION_LOSSES[name](logits, labels).sum(), logits)
    wrong = (~correct_mask(logits, labels)).unsqueeze(1).expand_as(logits)
    assert grad[wrong].abs().max() == 0 and grad[~wrong].abs().max() > 0


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6))
def test_bounds_and_equalities_on_random_logits(seed, k):
    logits, labels = _batch(seed, n=2, k=k, size=4)
    full, masked, balanced, divergence = ce(logits, labels), mce(logits, labels), bmce(logits, labels), \
        js(logits, labels)
    assert (masked <= full + 1e-6).all() and (masked >= 0).all() and (balanced >= 0).all()
    assert (divergence >= -1e-6).all() and (divergence <= math.log(2) + 1e-6).all()
    # SegPGD's λ = 0 is the masked CE; CosPGD's weights lie in [0, 1], so it never exceeds CE.
    torch.testing.assert_close(segpgd_loss(logits, labels, 0.0), masked)
    assert (cospgd_loss(logits, labels) <= full + 1e-6).all()
    # With every pixel of one class, the balanced masked CE is the masked CE.
    single = torch.where(labels == IGNORE_INDEX, IGNORE_INDEX, 0)
    torch.testing.assert_close(bmce(logits, single), mce(logits, single))


def test_pixel_cross_entropy_weights():
    logits, labels = _batch()
    assert torch.equal(pixel_cross_entropy(logits, labels, weights=torch.ones(labels.shape)),
                       pixel_cross_entropy(logits, labels))
    half = pixel_cross_entropy(logits, labels, weights=torch.full(labels.shape, 0.5))
    torch.testing.assert_close(half, pixel_cross_entropy(logits, labels) / 2)
    with pytest.raises(ValueError, match="weights must have the labels' shape"):
        pixel_cross_entropy(logits, labels, weights=torch.ones(3, 8))
