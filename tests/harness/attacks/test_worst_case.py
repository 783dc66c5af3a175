"""The per-image worst case over attacks, and SEA: never worse than any member on any image (fixtures: conftest.py;
the contracts every white-box attack keeps, sea included: test_whitebox_attacks.py)."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.attacks import APGD, FGSM, PGD, SegPGD, WorstCase, sea
from harness.attacks.best_iterate import correct_pixels
from harness.attacks.evaluation import evaluate_attack
from harness.attacks.worst_case import SEA_LOSSES, WorstCaseTally, select_worst
from harness.errors import HarnessError
from harness.metrics import ConfusionMatrix
from reports.results import make_record, validate_record


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
    assert attack.params() == {"eps": 8.0,
                               "members": "apgd-ce-100+apgd-mce-100+apgd-bmce-100+apgd-js-100+apgd-msph-100"}
    assert attack.iterations == 100 * len(SEA_LOSSES) == 500 and sea(4).eps == 4.0
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


# The data-set worst case: pixel accuracy from the per-image minimum, mIoU from the greedy selection over images.

def _maps(rows):
    return np.array(rows, dtype=np.int64)


def test_tally_by_hand():
    # Two images of 4 pixels, 3 classes. Member 0 leaves image 0 with 1 correct pixel, member 1 with 2; on image 1
    # member 1 leaves fewer (0 vs 3). Label 255 is never counted.
    labels = _maps([[[0, 1], [2, 255]], [[0, 0], [1, 1]]])
    member0 = _maps([[[0, 0], [0, 0]], [[0, 0], [1, 0]]])
    member1 = _maps([[[0, 1], [0, 0]], [[1, 1], [0, 0]]])
    tally = WorstCaseTally(("a", "b"), 3)
    tally.add(np.stack([member0[:1], member1[:1]]), labels[:1])  # batch by batch, as evaluate_attack adds them
    tally.add(np.stack([member0[1:], member1[1:]]), labels[1:])
    result = tally.result()
    assert result.accuracy_winner.tolist() == [0, 1]
    assert result.scores.pixel_accuracy == pytest.approx(1 / 7)  # 1 + 0 correct of 3 + 4 labelled pixels
    assert result.record_fields()["worst_case"]["pixel_accuracy_wins"] == {"a": 1, "b": 1}
    chosen = np.stack([(member0, member1)[m][i] for i, m in enumerate(result.miou_winner)])
    confusion = ConfusionMatrix(3)
    confusion.update(chosen, labels)
    assert result.scores.mean_iou == pytest.approx(confusion.scores().mean_iou)  # the mIoU of the images chosen
    assert result.scores.per_class_iou == confusion.scores().per_class_iou


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.integers(2, 4), st.integers(0, 2**31 - 1))
def test_tally_never_above_any_member_nor_the_per_image_minimum(members, n, k, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, (n, 3, 3))
    labels[rng.random(labels.shape) < 0.2] = 255
    labels[:, 0, 0] = 0  # at least one labelled pixel per image
    predictions = rng.integers(0, k, (members, n, 3, 3))
    tally = WorstCaseTally([f"m{i}" for i in range(members)], k)
    tally.add(predictions, labels)
    result = tally.result()
    valid = labels != 255
    correct = ((predictions == labels) & valid).reshape(members, n, -1).sum(2)
    assert np.array_equal(result.accuracy_winner, correct.argmin(0))  # per image the fewest correct, first of equals
    assert result.scores.pixel_accuracy == pytest.approx(correct.min(0).sum() / valid.sum())
    by_accuracy = ConfusionMatrix(k)
    by_accuracy.update(predictions[result.accuracy_winner, np.arange(n)], labels)
    assert result.scores.mean_iou <= by_accuracy.scores().mean_iou + 1e-12
    for member in result.member_scores:
        assert result.scores.pixel_accuracy <= member.pixel_accuracy + 1e-12
        assert result.scores.mean_iou <= member.mean_iou + 1e-12
    wins = result.record_fields()["worst_case"]
    assert sum(wins["pixel_accuracy_wins"].values()) == sum(wins["mean_iou_wins"].values()) == n


def test_tally_refuses_what_does_not_fit():
    with pytest.raises(HarnessError, match="at least one attack"):
        WorstCaseTally((), 3)
    tally = WorstCaseTally(("a", "b"), 3)
    with pytest.raises(HarnessError, match="no image"):
        tally.result()
    with pytest.raises(ValueError, match="do not fit"):
        tally.add(np.zeros((3, 1, 2, 2), np.int64), np.zeros((1, 2, 2), np.int64))
    with pytest.raises(ValueError, match="class index"):
        tally.add(np.full((2, 1, 2, 2), 3), np.zeros((1, 2, 2), np.int64))


def test_evaluate_attack_records_the_worst_case(model, synthetic_val):
    data = synthetic_val.subset(3)
    attack = WorstCase([PGD(8, 2), APGD(8, 2, "mce")])
    evaluation = evaluate_attack(model, data, attack, batch_size=2, keep_adversarial=True)
    worst = evaluation.worst_case
    assert worst is not None and evaluation.attacked is worst.scores
    members = [evaluate_attack(model, data, m, batch_size=2).attacked for m in attack.members]
    assert worst.member_scores == tuple(members)  # each member with the same seeds, alone
    assert worst.scores.pixel_accuracy <= min(m.pixel_accuracy for m in members)
    assert worst.scores.mean_iou <= min(m.mean_iou for m in members)
    confusion = ConfusionMatrix(data.num_classes)
    with torch.no_grad():
        confusion.update(model(torch.from_numpy(evaluation.adversarial)).argmax(1), data.labels)
    assert worst.scores.pixel_accuracy == pytest.approx(confusion.scores().pixel_accuracy)  # the images it returns
    record = make_record(model="m", engine="torch", precision="fp32", attack=attack.name,
                         params={**attack.params(), "seed": 0}, n_images=len(data), scores=worst.scores,
                         **worst.record_fields())
    assert validate_record(json.loads(json.dumps(record)), "record") == record  # a results.json reads it back
    assert record["params"]["members"] == "pgd-2+apgd-mce-2"
    assert sum(record["worst_case"]["pixel_accuracy_wins"].values()) == len(data)
