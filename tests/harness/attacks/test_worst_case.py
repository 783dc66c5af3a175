"""The per-image worst case over attacks, and SEA: never worse than any member on any image (fixtures: conftest.py;
the contracts every white-box attack keeps, sea included: test_whitebox_attacks.py)."""

import pytest
import torch

from harness.attacks import APGD, FGSM, PGD, SegPGD, WorstCase, sea
from harness.attacks.best_iterate import correct_pixels
from harness.attacks.worst_case import SEA_LOSSES, select_worst
from harness.errors import HarnessError


def _correct(model, images, labels):
    with torch.no_grad():
        return correct_pixels(model(images), labels)


@pytest.mark.parametrize("make", [lambda: sea(8, 3), lambda: WorstCase([FGSM(8), PGD(8, 2), SegPGD(8, 2)]),
                                  lambda: WorstCase([APGD(8, 3, "mce", reduced_eps=True), APGD(8, 2, "js")])],
                         ids=["sea-3", "fgsm+pgd+segpgd", "apgd-red+apgd"])
def test_per_image_minimum_over_the_members(model, batch, make):
    images, labels = batch
    attack = make()
    result = attack(model, images, labels, seed=7)
    members = torch.stack([_correct(model, m(model, images, labels, seed=7).images, labels) for m in attack.members])
    worst = _correct(model, result.images, labels)
    assert (worst <= members).all()  # no worse than any member on any image
    assert torch.equal(worst, members.min(0).values)
    assert torch.equal(result.winner, members.argmin(0))  # the first member among equals
    wins = result.wins()
    assert list(wins) == [m.label for m in attack.members] and sum(wins.values()) == len(images)
    assert (result.images - images).abs().max() <= 8 / 255 + 1e-6
    assert result.queries == len(images) * sum(m.iterations for m in attack.members) == len(images) * attack.iterations
    assert result.seconds > 0
    assert torch.equal(result.images, attack(model, images, labels, seed=7).images)


def test_select_worst_by_hand(model, batch):
    images, labels = batch
    attacked = PGD(8, 3)(model, images, labels).images
    chosen, winner = select_worst(model, labels, [images, attacked, images])
    clean, adv = _correct(model, images, labels), _correct(model, attacked, labels)
    assert torch.equal(winner, (adv < clean).long())  # ties stay with the first candidate
    assert torch.equal(_correct(model, chosen, labels), torch.minimum(clean, adv))
    with pytest.raises(HarnessError, match="at least one attack"):
        select_worst(model, labels, [])


def test_sea_preset():
    attack = sea()
    assert attack.label == "sea" and sea(8, 50).label == "sea-50"
    assert [m.label for m in attack.members] == [f"apgd-{loss}-100" for loss in SEA_LOSSES]
    assert attack.params() == {"eps": 8.0, "members": ["apgd-ce-100", "apgd-mce-100", "apgd-bmce-100", "apgd-js-100"]}
    assert attack.iterations == 400 and sea(4).eps == 4.0
    assert WorstCase([PGD(8, 2), APGD(8, 3, "js", reduced_eps=True)]).label == "pgd-2+apgd-js-red-3"


def test_bad_ensembles():
    with pytest.raises(HarnessError, match="at least one attack"):
        WorstCase([])
    with pytest.raises(HarnessError, match="same attack twice"):
        WorstCase([PGD(8, 2), PGD(8, 2)])
    with pytest.raises(HarnessError, match="share one eps"):
        WorstCase([PGD(8, 2), APGD(4, 2)])
    with pytest.raises(HarnessError, match="cannot contain another worst case"):
        WorstCase([PGD(8, 2), sea(8, 2)])


def test_bad_batches_are_refused_before_any_member_runs(model, batch):
    images, labels = batch
    with pytest.raises(HarnessError, match="values in \\[0, 1\\]"):
        sea(8, 2)(model, images * 255, labels)
    model.train()
    try:
        with pytest.raises(HarnessError, match="eval mode"):
            sea(8, 2)(model, images, labels)
    finally:
        model.eval()
