"""Issue 3's acceptance on a trained reduced model and a small fixed subset of the built-in data, ε = 8."""

import pytest

from harness.attacks import FGSM, MIFGSM, PGD
from harness.attacks.evaluation import evaluate_attack

MODEL = "fcn8s-vgg16"
N_IMAGES = 16


@pytest.fixture(scope="module")
def accuracy(trained_model, synthetic_val):
    """Pixel accuracy (fraction) by column: clean, fgsm, mifgsm-20, pgd-20, pgd-100."""
    model = trained_model(MODEL)
    data = synthetic_val.subset(N_IMAGES)
    scores = {}
    for attack in (FGSM(8), MIFGSM(8, steps=20), PGD(8, steps=20), PGD(8, steps=100)):
        evaluation = evaluate_attack(model, data, attack, batch_size=N_IMAGES, seed=0)
        scores["clean"] = evaluation.clean.pixel_accuracy
        scores[attack.label] = evaluation.attacked.pixel_accuracy
    return scores


def test_clean_above_fgsm_above_pgd20(accuracy):
    assert accuracy["clean"] > accuracy["fgsm"] > accuracy["pgd-20"]


def test_more_pgd_iterations_do_not_help_the_model(accuracy):
    assert accuracy["pgd-100"] <= accuracy["pgd-20"]


def test_iterative_attacks_cost_at_least_30_points(accuracy):
    assert accuracy["mifgsm-20"] <= accuracy["clean"] - 0.30
    assert accuracy["pgd-20"] <= accuracy["clean"] - 0.30
