"""APGD: the checkpoints and step-size halving on deterministic objectives, the kept best point, and the
attack on a trained reduced model (the contracts every white-box attack keeps: test_whitebox_attacks.py)."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from harness.attacks import APGD, pixel_cross_entropy
from harness.attacks.apgd import (
    REDUCED_EPS_STAGES,
    apgd_checkpoints,
    reduced_eps_stages,
    run_apgd,
    step_size_halvings,
)
from harness.attacks.base import linf_box
from harness.attacks.best_iterate import BestIterate
from harness.errors import HarnessError

EPS = 0.1


def test_checkpoints_of_100_steps():
    # p = 0, .22, .41, .57, .70, .80, .87, .93, .99 (then 1.05 > 1)
    assert apgd_checkpoints(100) == (0, 22, 41, 57, 70, 80, 87, 93, 99)


@given(st.integers(1, 5000))
def test_checkpoints_are_increasing_and_within_the_run(steps):
    points = apgd_checkpoints(steps)
    assert points[0] == 0 and all(a < b for a, b in zip(points, points[1:], strict=False))
    assert points[-1] <= steps
    gaps = [b - a for a, b in zip(points, points[1:], strict=False)]
    assert all(g >= 1 for g in gaps)


def test_halving_conditions_by_hand():
    window = 10
    increases = torch.tensor([7.0, 8.0, 8.0, 10.0])  # 7 < 0.75 * 10: oscillating; 8 is not
    halved_last = torch.tensor([False, False, True, False])
    best, best_last = torch.tensor([1.0, 1.0, 1.0, 2.0]), torch.tensor([0.5, 1.0, 1.0, 1.0])
    # image 0: condition 1; image 1: condition 2 (no halving last time, best unchanged); image 2: best
    # unchanged but halved last time; image 3: rising.
    assert step_size_halvings(increases, window, halved_last, best, best_last).tolist() == [True, True, False, False]


def _box(n: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    start = torch.full((n, 3, 2, 2), 0.5)
    low, high = linf_box(start, EPS)
    return start, low, high


def test_a_stalled_objective_halves_at_every_checkpoint():
    """f = Σx with a constant gradient: the first step reaches the ball's corner, then f never rises."""
    start, low, high = _box()

    def evaluate(x, with_gradient):
        return x.flatten(1).sum(1), torch.ones_like(x) if with_gradient else None, torch.zeros(2, dtype=torch.int64)

    steps = 100
    run = run_apgd(evaluate, start, low, high, EPS, steps)
    checkpoints = apgd_checkpoints(steps)[1:]
    expected = [2 * EPS / 2 ** sum(w <= k for w in checkpoints) for k in range(steps)]
    assert run.step_sizes.shape == (steps, 2)
    torch.testing.assert_close(run.step_sizes[:, 0], torch.tensor(expected))
    torch.testing.assert_close(run.last, high)
    torch.testing.assert_close(run.x_max, high)


def test_a_rising_objective_keeps_its_step_size():
    start, low, high = _box()
    calls = []

    def evaluate(x, with_gradient):
        calls.append(with_gradient)
        return torch.full((2,), float(len(calls))), torch.ones_like(x) if with_gradient else None, \
            torch.zeros(2, dtype=torch.int64)

    run = run_apgd(evaluate, start, low, high, EPS, 50)
    assert (run.step_sizes == 2 * EPS).all()
    # 50 evaluations with a gradient (x0..x49), one without (x50).
    assert calls == [True] * 50 + [False]


def test_condition_2_halves_and_restarts_from_the_best_point():
    """f(x⁰) = 100 is never beaten in the first window although every later step rises: condition 2 halves the
    step at w₁ = 22 and the iterate restarts from x_max = x⁰; from then on f rises past 100."""
    start, low, high = _box(1)
    seen = []

    def evaluate(x, with_gradient):
        seen.append(x.clone())
        k = len(seen) - 1
        value = 100.0 if k == 0 else float(k if k <= 22 else 100 + k)
        return torch.tensor([value]), torch.ones_like(x) if with_gradient else None, torch.zeros(1, dtype=torch.int64)

    run = run_apgd(evaluate, start, low, high, EPS, 100)
    sizes = run.step_sizes[:, 0]
    assert (sizes[:22] == 2 * EPS).all() and (sizes[22:] == EPS).all()
    # Step 22 starts from x_max = x⁰ = 0.5 with η = ε: z = 0.6, and the momentum term uses x⁽²²⁾ = 0.6:
    # 0.5 + 0.75 (0.6 − 0.5) + 0.25 (0.5 − 0.6) = 0.55.
    torch.testing.assert_close(seen[23], torch.full_like(start, 0.55))
    torch.testing.assert_close(seen[1], high)  # the first step: x⁰ + 2ε, projected onto the ball


def test_best_iterate_bookkeeping():
    """Every evaluated point is offered; the kept one has the fewest correct pixels (ties: the earliest)."""
    start, low, high = _box(3)
    counts = [[5, 5, 9], [3, 5, 9], [4, 2, 9], [3, 2, 9], [6, 7, 8]]
    seen = []

    def evaluate(x, with_gradient):
        seen.append(x.clone())
        correct = torch.tensor(counts[len(seen) - 1])
        return -correct.float(), torch.ones_like(x) if with_gradient else None, correct

    best = BestIterate()
    run_apgd(evaluate, start, low, high, EPS, len(counts) - 1, best)
    assert best.correct.tolist() == [3, 2, 8]
    for image, index in enumerate([1, 2, 4]):
        assert torch.equal(best.result()[image], seen[index][image])


def test_best_iterate_ties_keep_the_earlier_one():
    best = BestIterate()
    a, b = torch.zeros(2, 3, 1, 1), torch.ones(2, 3, 1, 1)
    assert best.update(a, torch.tensor([4, 4])).tolist() == [True, True]
    assert best.update(b, torch.tensor([4, 3])).tolist() == [False, True]
    assert best.result()[:, 0, 0, 0].tolist() == [0.0, 1.0]
    with pytest.raises(RuntimeError):
        BestIterate().result()


def test_reduced_eps_stages():
    assert [r for r, _ in REDUCED_EPS_STAGES] == [2.0, 1.5, 1.0]
    assert reduced_eps_stages(100) == [(2.0, 30), (1.5, 30), (1.0, 40)]
    assert reduced_eps_stages(5) == [(2.0, 1), (1.5, 1), (1.0, 3)]
    assert reduced_eps_stages(1) == [(1.0, 1)]
    for steps in range(1, 60):
        stages = reduced_eps_stages(steps)
        assert sum(n for _, n in stages) == steps and stages[-1][0] == 1.0 and stages[-1][1] >= 1


# The attack on a trained reduced model (its contracts: test_whitebox_attacks.py; fixtures: conftest.py).


def test_beats_its_own_start(model, batch):
    """One step of APGD-CE with its 2ε step raises the cross entropy over the clean images on average."""
    images, labels = batch
    adv = APGD(8, 3, "ce")(model, images, labels).images
    with torch.no_grad():
        assert pixel_cross_entropy(model(adv), labels).mean() > pixel_cross_entropy(model(images), labels).mean()


def test_parameters_and_errors():
    assert APGD(8, 100, "mce").label == "apgd-mce-100"
    assert APGD(4, 50, "js", reduced_eps=True).label == "apgd-js-red-50"
    assert APGD().params() == {"eps": 8.0, "steps": 100, "loss": "ce", "reduced_eps": False,
                               "momentum": 0.75, "rho": 0.75}
    with pytest.raises(HarnessError, match="unknown apgd loss 'dlr'; choose from: ce, mce, bmce, js, msph"):
        APGD(8, 10, "dlr")
    with pytest.raises(HarnessError, match="steps must be"):
        APGD(8, 0)
    with pytest.raises(HarnessError, match="outside \\(0, 255\\]"):
        APGD(0)
