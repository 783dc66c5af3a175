"""The engine factory, ``engines`` and ``eval --engine``: the same metrics from every engine."""

from __future__ import annotations

import json

import pytest

from engines.availability import availability, check
from engines.factory import create_engine
from engines.torch_engine import TorchEngine
from harness.cli import main
from harness.errors import HarnessError


def test_torch_engine_never_changes_the_callers_model(loaded_model, synthetic_val):
    model, source = loaded_model("fcn8s-vgg16")
    model.train()
    with create_engine("torch", model, source, synthetic_val) as engine:
        assert isinstance(engine, TorchEngine) and engine.info.artifact_sha256 == source["sha256"]
        first = engine.infer(synthetic_val.tensors(slice(0, 2))[0].numpy())
        second = engine.infer(synthetic_val.tensors(slice(0, 2))[0].numpy())
    assert model.training  # dropout/BatchNorm in eval mode inside the engine only
    assert (first == second).all()


def test_factory_rejects_impossible_combinations(loaded_model, synthetic_val):
    model, source = loaded_model("fcn8s-vgg16")
    for kwargs, words in [
        ({"name": "torch", "precision": "int8"}, "use --engine ort or trt"),
        ({"name": "tflite"}, "unknown engine"),
        ({"name": "ort", "device": "tpu"}, "unknown device"),
    ]:
        with pytest.raises(HarnessError, match=words) as info:
            create_engine(model=model, source=source, data=synthetic_val, **kwargs)
        assert info.value.exit_code == 2
    if not check("ort", "cuda").usable:
        with pytest.raises(HarnessError, match="onnxruntime-gpu"):
            create_engine("ort", model, source, synthetic_val, device="cuda")


def test_engines_command_lists_every_engine(capsys):
    assert main(["engines"]) == 0
    out = capsys.readouterr().out
    for row in availability():
        assert row.engine in out
    assert "ort" in out and "cpu" in out and "yes" in out


def _eval(tmp_path, *extra):
    path = tmp_path / f"eval-{'-'.join(extra) or 'torch'}.json"
    assert main(["eval", "--model", "fcn8s-vgg16", "--n-images", "16", "--json", str(path), *extra]) == 0
    return json.loads(path.read_text())["results"][0]


def test_eval_gives_the_same_metrics_from_torch_and_ort(loaded_model, tmp_path, capsys):
    loaded_model("fcn8s-vgg16")
    torch_record = _eval(tmp_path)
    ort_record = _eval(tmp_path, "--engine", "ort")
    int8_record = _eval(tmp_path, "--engine", "ort", "--precision", "int8", "--calibration-images", "32")
    assert (torch_record["engine"], torch_record["precision"]) == ("torch", "fp32")
    assert (ort_record["engine"], ort_record["precision"]) == ("ort", "fp32")
    assert (int8_record["engine"], int8_record["precision"]) == ("ort", "int8")
    assert ort_record["pixel_accuracy"] == pytest.approx(torch_record["pixel_accuracy"], abs=1e-4)
    assert ort_record["mean_iou"] == pytest.approx(torch_record["mean_iou"], abs=1e-3)
    assert int8_record["pixel_accuracy"] == pytest.approx(torch_record["pixel_accuracy"], abs=0.01)
    assert ort_record["queries"] == 16 and ort_record["engine_info"]["name"] == "ort"
    assert len(ort_record["engine_info"]["artifact_sha256"]) == 64
    assert "ort fp32" in capsys.readouterr().out


def test_eval_torch_engine_with_int8_is_a_usage_error(loaded_model, capsys):
    loaded_model("fcn8s-vgg16")
    assert main(["eval", "--model", "fcn8s-vgg16", "--engine", "torch", "--precision", "int8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--engine ort or trt" in err
