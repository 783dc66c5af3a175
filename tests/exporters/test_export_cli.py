"""``python -m harness export``: artifacts, --out copies, parity JSON, exit 1 below the threshold."""

from __future__ import annotations

import json

import onnx

from exporters.parity import DEFAULT_MIN_AGREEMENT
from harness.cli import main


def test_export_writes_artifacts_and_a_passing_parity_report(trained_model, int8_min_agreement, tmp_path, capsys):
    trained_model("fcn8s-vgg16")
    out, report = tmp_path / "out", tmp_path / "parity.json"
    # The briefly trained test model is less certain than the models `train` makes: its int8 agreement can be
    # below the command's deployment default of 98 % (conftest's int8_min_agreement says why), so the test sets
    # the bound the tests promise and checks fp32 and fp16 against their own defaults below.
    code = main(["export", "--model", "fcn8s-vgg16", "--precision", "fp32", "fp16", "int8", "--n-images", "8",
                 "--calibration-images", "32", "--out", str(out), "--json", str(report),
                 "--min-agreement", str(100 * int8_min_agreement)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "Parity against PyTorch" in printed and "FAIL" not in printed
    for precision in ("fp32", "fp16", "int8"):
        onnx.checker.check_model(str(out / f"fcn8s-vgg16-reduced.{precision}.onnx"), full_check=True)
    doc = json.loads(report.read_text())
    parity = {a["parity"]["precision"]: a["parity"] for a in doc["artifacts"]}
    assert list(parity) == ["fp32", "fp16", "int8"]
    assert all(p["passed"] and p["min_agreement"] == int8_min_agreement for p in parity.values())
    assert parity["fp32"]["agreement"] >= DEFAULT_MIN_AGREEMENT["fp32"] and parity["fp32"]["max_abs_diff"] < 1e-3
    assert parity["fp16"]["agreement"] >= DEFAULT_MIN_AGREEMENT["fp16"]
    assert parity["int8"]["agreement"] >= int8_min_agreement and parity["int8"]["max_abs_diff"] >= 1e-3


def test_export_below_the_agreement_threshold_exits_1(trained_model, capsys):
    trained_model("fcn8s-vgg16")
    # int8 never matches fp32 on every pixel, so a 100 % requirement must fail the check.
    code = main(["export", "--model", "fcn8s-vgg16", "--precision", "int8", "--n-images", "8",
                 "--calibration-images", "32", "--min-agreement", "100"])
    captured = capsys.readouterr()
    assert code == 1
    assert "FAIL" in captured.out
    assert len(captured.err.strip().splitlines()) == 1 and "parity below threshold" in captured.err
