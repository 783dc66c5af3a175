"""``check`` says when a user's target changed between the baseline and the results (reports.target_changes),
and gates its records by name all the same: a retrained model is compared with the previous one's numbers."""

import copy

import pytest

from harness.metrics import Scores
from reports.results import make_record
from reports.target_changes import MAX_NOTES, target_changes

CARD = {"schema": 1, "name": "unet", "num_classes": 7, "class_names": None,
        "input": {"name": "input", "layout": "NCHW", "mean": [0.485, 0.456, 0.406]},
        "output": {"name": "output", "kind": "logits"}, "unknown": []}


def record(model="unet", engine="ort", precision="fp32", attack="none", target=True, sha="a" * 64, card=None,
           kind="onnx"):
    extra = {"target": {"kind": kind, "name": model, "path": f"/repo/{model}.onnx", "entry": None, "sha256": sha,
                        "card": copy.deepcopy(card or CARD)}} if target else {}
    return make_record(model=model, engine=engine, precision=precision, attack=attack, params={}, n_images=4,
                       scores=Scores(0.5, 0.2, [0.5] * 7, 100), **extra)


def test_the_same_target_gives_no_note_even_from_another_folder():
    moved = record()
    moved["target"]["path"] = "/ci/checkout/unet.onnx"  # paths differ between machines: not an identity
    assert target_changes([record(), record(precision="int8")], [moved, record(precision="int8")]) == []
    assert target_changes([record(target=False, model="fcn8s-vgg16")], [record(target=False, model="fcn8s-vgg16")]) \
        == []


@pytest.mark.parametrize("change, said", [
    ({"sha": "b" * 64}, "sha256 aaaaaaaaaaaa -> bbbbbbbbbbbb"),
    ({"card": {**CARD, "input": {**CARD["input"], "mean": [0.5, 0.5, 0.5]}}}, "card: input.mean"),
    ({"kind": "plan"}, "kind onnx -> plan"),
])
def test_a_changed_file_card_or_kind_is_one_note_naming_what_changed(change, said):
    notes = target_changes([record(), record(attack="square")], [record(**change), record(attack="square", **change)])
    assert len(notes) == 1
    assert notes[0].startswith("note: target unet changed since the baseline (") and said in notes[0]
    assert notes[0].endswith("the new version is gated against the previous one's numbers")


def test_a_model_that_changes_between_built_in_and_target_is_said():
    notes = target_changes([record(target=False)], [record()])
    assert notes == ["note: unet was a built-in model in the baseline and is a user's target now; its records are "
                     "compared by name"]
    assert "was a user's target in the baseline" in target_changes([record()], [record(target=False)])[0]


def test_models_on_one_side_only_and_odd_fields_give_no_note_and_no_error():
    odd = record()
    odd["target"] = {"kind": 3, "card": "not a card"}  # validate_record keeps unknown fields as they are
    assert target_changes([record(model="gone")], [record(model="new")]) == []
    assert len(target_changes([record()], [odd])) == 1


def test_many_changed_targets_are_summed_up_in_a_bounded_number_of_lines():
    before = [record(model=f"m{i}") for i in range(MAX_NOTES + 5)]
    after = [record(model=f"m{i}", sha="c" * 64) for i in range(MAX_NOTES + 5)]
    notes = target_changes(before, after)
    assert len(notes) == MAX_NOTES + 1 and notes[-1] == "note: and 5 more changed target(s)"
