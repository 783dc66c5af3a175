"""The AutoAttack-style sanity checks over hand-made records: each pattern warns once, a sound run not at all."""

import pytest

from harness.attacks.blackbox_attacks import BLACKBOX_ATTACKS
from harness.attacks.sanity import is_blackbox, is_whitebox, record_label, sanity_warnings

DATA = {"name": "synthetic", "split": "val", "n": 16}


def _record(attack, accuracy, model="fcn8s-vgg16", engine="torch", precision="fp32", n_images=16, **params):
    record = {"model": model, "engine": engine, "precision": precision, "attack": attack,
              "params": {"eps": 8.0, "seed": 0, **params}, "n_images": n_images, "pixel_accuracy": accuracy,
              "mean_iou": accuracy / 2, "per_class_iou": [accuracy], "queries": 1, "seconds": 1.0, "size": "reduced",
              "data": DATA}
    if attack == "none":
        record["params"] = {}
    return record


SOUND = [_record("none", 0.95), _record("fgsm", 0.60), _record("pgd", 0.30, steps=20, alpha=2.0),
         _record("pgd", 0.20, steps=100, alpha=2.0), _record("sea", 0.05, members="apgd-ce-100+apgd-mce-100"),
         _record("square", 0.40, engine="ort", queries=1000, init="vertical"),
         _record("pgd", 0.10, eps=16.0, steps=20, alpha=4.0)]


def test_a_sound_run_has_no_warning():
    assert sanity_warnings(SOUND) == []


@pytest.mark.parametrize(("extra", "kind", "words"), [
    (_record("square", 0.01, engine="ort", queries=1000, init="horizontal"), "blackbox", "below the strongest"),
    (_record("hardlabel", 0.01, engine="ort", queries=1000, init="vertical", colour="rgb"), "blackbox",
     "the black-box hardlabel-1000q (ort)"),
    ({**_record("pgd", 0.02, steps=20, alpha=2.0), "source_model": "fcn-resnet50"}, "blackbox", "from fcn-resnet50"),
    (_record("pgd", 0.50, eps=12.0, steps=20, alpha=3.0), "eps", "at eps 12"),
    (_record("pgd", 0.35, steps=200, alpha=2.0), "iterations", "at steps 200"),
    (_record("fgsm", 0.15, eps=8.0, model="fcn8s-vgg16", n_images=16), "fgsm", "FGSM leaves 15.00 %"),
], ids=["square", "hardlabel", "transfer", "eps", "iterations", "fgsm"])
def test_each_pattern_warns(extra, kind, words):
    records = [r for r in SOUND if not (kind == "fgsm" and r["attack"] == "fgsm")] + [extra]
    warnings = sanity_warnings(records)
    assert [w.kind for w in warnings] == [kind], warnings
    assert words in warnings[0].message and "masked" in warnings[0].message
    assert warnings[0].model == "fcn8s-vgg16"


def test_other_images_models_or_precisions_are_not_compared():
    square = _record("square", 0.01, engine="ort", queries=1000, init="vertical")
    for other in ({"n_images": 8}, {"model": "fcn-resnet50"}, {"precision": "int8"}, {"data": {**DATA, "n": 8}}):
        assert sanity_warnings(SOUND[1:5] + [{**square, **other}]) == [], other


def test_differences_within_the_margin_are_no_warning():
    records = [_record("pgd", 0.300, steps=20, alpha=2.0), _record("pgd", 0.304, steps=100, alpha=2.0)]
    assert sanity_warnings(records) == []
    assert [w.kind for w in sanity_warnings(records, margin=0.1)] == ["iterations"]


def test_fgsm_is_compared_only_with_pgd_that_can_cross_the_ball():
    fgsm = _record("fgsm", 0.60)
    short = _record("pgd", 0.70, steps=1, alpha=2.0)  # one step of eps / 4: weaker than FGSM's step of eps
    assert sanity_warnings([fgsm, short]) == []
    long = _record("pgd", 0.70, steps=8, alpha=2.0)
    assert [w.kind for w in sanity_warnings([fgsm, long])] == ["fgsm"]


def test_the_sweep_compares_its_own_step_rule():
    # Figure 3: alpha = eps / steps; Table 1: alpha fixed. Each is compared within itself, not across.
    sweep = [_record("pgd", 0.30, steps=20, alpha=0.4), _record("pgd", 0.25, steps=40, alpha=0.2)]
    table1 = [_record("pgd", 0.10, steps=20, alpha=2.0), _record("pgd", 0.05, steps=100, alpha=2.0)]
    assert sanity_warnings(sweep + table1) == []
    rising = [*sweep, _record("pgd", 0.40, steps=80, alpha=0.1)]
    assert [w.kind for w in sanity_warnings(rising + table1)] == ["iterations"]


@pytest.mark.parametrize(("attack", "source", "white"), [
    ("pgd", None, True), ("sea", None, True), ("apgd-mce-100+pgd-20", None, True), ("apgd-js-red", None, True),
    ("square", None, False), ("pgd", "fcn-resnet50", False), ("pgd", "fcn8s-vgg16", True), ("hardlabel", None, False),
])
def test_white_and_black_box(attack, source, white):
    record = {**_record(attack, 0.5), "source_model": source}
    assert is_whitebox(record) is white
    assert is_blackbox(record) is not white


@pytest.mark.parametrize("attack", BLACKBOX_ATTACKS)
@pytest.mark.parametrize("engine", ["ort", "trt", "torch"])
def test_every_black_box_attack_below_the_white_box_ones_warns_on_any_engine(attack, engine):
    record = _record(attack, 0.01, engine=engine, queries=300, init="auto")
    warnings = sanity_warnings([*SOUND, record])
    assert [w.kind for w in warnings] == ["blackbox"]
    assert f"{attack}-300q ({engine})" in warnings[0].message and record_label(record) == f"{attack}-300q"


def test_an_attack_neither_white_nor_black_box_is_compared_with_nothing():
    unknown = _record("newattack-7", 0.01, engine="ort")  # a name this version does not know
    assert not is_whitebox(unknown) and not is_blackbox(unknown)
    assert sanity_warnings([*SOUND, unknown]) == []
