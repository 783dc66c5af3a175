"""Table 1's worst case (sea) in the suite: built from its members' stored example sets, scored through the torch
engine, with win counts; the same numbers as the attack run on its own, and reused on a second run."""

import numpy as np
import pytest

from engines.factory import create_engine
from harness.attacks.evaluation import evaluate_attack
from harness.suite.whitebox import run_whitebox
from harness.transfer import TransferSettings, engine_scores, parse_attacks
from reports.results import validate_record


@pytest.fixture(scope="module")
def setting(loaded_model, synthetic_val):
    return {"fcn8s-vgg16": loaded_model("fcn8s-vgg16")}, synthetic_val.subset(4), TransferSettings(batch_size=2, seed=3)


def test_sea_in_table1_is_the_worst_case_of_its_stored_members(setting):
    models, data, settings = setting
    attacks = {"fcn8s-vgg16": parse_attacks("apgd-mce-2,sea-2", 8)}
    outcome = run_whitebox(models, attacks, data, settings, "table1")
    records = {r["attack"]: r for r in outcome.records}
    sea = records["sea-2"]
    assert validate_record(sea, "sea") is sea and sea["params"]["members"].split("+")[1] == "apgd-mce-2"
    wins = sea["worst_case"]
    assert sum(wins["pixel_accuracy_wins"].values()) == sum(wins["mean_iou_wins"].values()) == len(data)
    assert sea["pixel_accuracy"] <= records["apgd-mce"]["pixel_accuracy"]
    assert sea["mean_iou"] <= records["apgd-mce"]["mean_iou"]
    # The stored sea examples are the per-image minimum: scoring them again gives the record's pixel accuracy.
    model, source = models["fcn8s-vgg16"]
    with create_engine("torch", model, source, data, max_batch=2) as engine:
        scores, _ = engine_scores(engine, outcome.sets["fcn8s-vgg16", "sea-2"].examples.images, data.labels,
                                  data.num_classes, 2)
    assert scores.pixel_accuracy == pytest.approx(sea["pixel_accuracy"])
    # The attack run on its own (the whitebox command's path) gives the same numbers and wins.
    alone = evaluate_attack(model, data, attacks["fcn8s-vgg16"][1], 2, settings.seed)
    assert alone.attacked.pixel_accuracy == pytest.approx(sea["pixel_accuracy"])
    assert alone.attacked.mean_iou == pytest.approx(sea["mean_iou"])
    assert alone.worst_case.record_fields()["worst_case"] == wins
    # A second run reuses every member and the sea set, with the same numbers.
    again = run_whitebox(models, attacks, data, settings, "table1")
    second = {r["attack"]: r for r in again.records}["sea-2"]
    assert second["reused"] and second["seconds"] == 0
    assert (second["pixel_accuracy"], second["mean_iou"], second["worst_case"]) == \
        (sea["pixel_accuracy"], sea["mean_iou"], wins)
    assert np.array_equal(again.sets["fcn8s-vgg16", "sea-2"].examples.images,
                          outcome.sets["fcn8s-vgg16", "sea-2"].examples.images)
