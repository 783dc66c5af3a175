"""``python -m harness export``: artifacts, --out copies, parity JSON, exit 1 below the threshold."""

from __future__ import annotations

import json

import onnx

from harness.cli import main


def test_export_writes_artifacts_and_a_passing_parity_report(trained_model, tmp_path, capsys):
    trained_model("fcn8s-vgg16")
    out, report = tmp_path / "out", tmp_path / "parity.json"
    code = main(["export", "--model", "fcn8s-vgg16", "--precision", "fp32", "fp16", "int8", "--n-images", "8",
                 "--calibration-images", "32", "--out", str(out), "--json", str(report)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "Parity against PyTorch" in printed and "FAIL" not in printed
    for precision in ("fp32", "fp16", "int8"):
        onnx.checker.check_model(str(out / f"fcn8s-vgg16-reduced.{precision}.onnx"), full_check=True)
    doc = json.loads(report.read_text())
    assert [a["parity"]["precision"] for a in doc["artifacts"]] == ["fp32", "fp16", "int8"]
    assert all(a["parity"]["passed"] for a in doc["artifacts"])
    assert doc["artifacts"][0]["parity"]["agreement"] >= 0.999


def test_export_below_the_agreement_threshold_exits_1(trained_model, capsys):
    trained_model("fcn8s-vgg16")
    # int8 never matches fp32 on every pixel, so a 100 % requirement must fail the check.
    code = main(["export", "--model", "fcn8s-vgg16", "--precision", "int8", "--n-images", "8",
                 "--calibration-images", "32", "--min-agreement", "100"])
    captured = capsys.readouterr()
    assert code == 1
    assert "FAIL" in captured.out
    assert len(captured.err.strip().splitlines()) == 1 and "parity below threshold" in captured.err
