"""suite.json of a suite with ``[[targets]]``: its ``targets`` and ``skipped`` entries are checked like the rest."""

import pytest

from harness.errors import HarnessError
from reports.run_dir import validate_suite

TARGET = {"kind": "onnx", "name": "unet", "path": "/repo/unet.onnx", "entry": None, "sha256": "a" * 64,
          "card": {"schema": 1}}
SKIP = {"model": "unet", "experiment": "deployment", "engine": "torch", "precision": "fp32",
        "reason": "an ONNX file runs on ort and trt (it has no PyTorch model)"}


def test_a_suite_json_with_targets_and_skips_is_valid():
    square = {"model": "unet-map", "experiment": "square", "reason": "its output is a class map"}  # no engine
    doc = {"suite": {"name": "mine"}, "targets": {"unet": TARGET}, "skipped": [SKIP, square]}
    assert validate_suite(doc, "suite.json")["targets"]["unet"]["sha256"] == "a" * 64


@pytest.mark.parametrize("change, message", [
    ({"targets": []}, "suite.json.targets"),
    ({"targets": {"unet": {**TARGET, "sha256": 3}}}, "suite.json.targets.unet.sha256"),
    ({"targets": {"unet": {k: v for k, v in TARGET.items() if k != "kind"}}}, "kind"),
    ({"targets": {"unet": {**TARGET, "card": "x"}}}, "suite.json.targets.unet.card"),
    ({"skipped": {"a": 1}}, "suite.json.skipped"),
    ({"skipped": [{**SKIP, "reason": ""}]}, "suite.json.skipped[0].reason"),
    ({"skipped": [{k: v for k, v in SKIP.items() if k != "model"}]}, "model"),
    ({"skipped": [{**SKIP, "engine": 5}]}, "suite.json.skipped[0].engine"),
])
def test_a_damaged_targets_or_skipped_entry_is_one_line(change, message):
    with pytest.raises(HarnessError) as error:
        validate_suite({"suite": {"name": "mine"}, **change}, "suite.json")
    assert message in str(error.value) and "\n" not in str(error.value)
