"""TensorRT plans: built from the ONNX variant of each precision, cached, and in parity with PyTorch.

The builds need TensorRT 10+ and an NVIDIA GPU; without them these tests skip with the reason a
user would see, and the error path is tested instead.
"""

from __future__ import annotations

import pytest

from engines.availability import tensorrt_missing
from engines.torch_engine import TorchEngine
from engines.trt_engine import TrtEngine
from exporters.artifacts import Artifact, ModelSource, onnx_artifact
from exporters.parity import DEFAULT_MIN_AGREEMENT, compare
from exporters.tensorrt_plan import (
    PlanSettings,
    build_plan,
    plan_key_fields,
    strongly_typed,
    typing_mode,
    version_tuple,
)
from harness.errors import HarnessError
from harness.fileio import sha256_file

MISSING = tensorrt_missing()
needs_tensorrt = pytest.mark.skipif(MISSING is not None, reason=f"TensorRT engine unavailable: {MISSING}")


@pytest.mark.parametrize("version, mode", [
    ("10.0.1.6", "weak"), ("10.11.0.33", "weak"),  # precision builder flags
    ("10.12.0.36", "strong-opt-in"), ("10.13.3.9", "strong-opt-in"), ("10.16.1.11", "strong-opt-in"),
    ("11.0.0.114", "strong"), ("11.4.0.31", "strong"), ("12.0.0", "strong"),  # always strong, no flags
])
def test_typing_follows_the_tensorrt_release(version, mode):
    assert typing_mode(version) == mode
    assert strongly_typed(version) == (mode != "weak")
    assert plan_key_fields("0" * 64, PlanSettings(), version, {"gpu": "g", "compute_capability": "9.0"})[
        "strongly_typed"] == (mode != "weak")


def test_version_tuple_ignores_suffixes():
    assert version_tuple("10.12.0.36") == (10, 12, 0, 36)
    assert version_tuple("11.4.0.31.post1") == (11, 4, 0, 31)


def test_plan_settings_reject_an_impossible_profile():
    with pytest.raises(HarnessError, match="min <= opt <= max"):
        PlanSettings(min_batch=4, opt_batch=2, max_batch=8)


@pytest.mark.skipif(MISSING is None, reason="TensorRT is usable here; the missing-TensorRT error is not reachable")
def test_without_tensorrt_a_plan_build_is_a_one_line_error(loaded_model, synthetic_val):
    model, source = loaded_model("fcn8s-vgg16")
    onnx = onnx_artifact(model, ModelSource.from_loaded(source, synthetic_val.class_names), "fp32")
    with pytest.raises(HarnessError) as info:
        build_plan(onnx, PlanSettings(), "fcn8s-vgg16--reduced")
    assert "\n" not in str(info.value) and info.value.exit_code == 2 and MISSING in str(info.value)


@needs_tensorrt
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_plan_agrees_with_pytorch_and_is_cached(precision, loaded_model, synthetic_val, synthetic_train):
    model, source = loaded_model("fcn8s-vgg16")
    group = ModelSource.from_loaded(source, synthetic_val.class_names)
    onnx = onnx_artifact(model, group, precision, calibration=synthetic_train.subset(32))
    settings = PlanSettings(precision=precision, height=64, width=64, opt_batch=8, max_batch=16)
    plan = build_plan(onnx, settings, group.group)
    again = build_plan(onnx, settings, group.group)
    assert again.reused and again.sha256 == plan.sha256
    with TorchEngine(model, device="cuda") as ref, TrtEngine(plan.path, precision=precision) as trt:
        assert trt.max_batch == 16
        report = compare(ref, trt, synthetic_val.subset(32), label="fcn8s-vgg16", precision=precision)
    assert report.agreement >= DEFAULT_MIN_AGREEMENT[precision]


@needs_tensorrt
@pytest.mark.gpu
@pytest.mark.parametrize("content", [b"", b"not an ONNX model", b"\x08\x07" * 500])
def test_an_unparsable_onnx_file_is_one_line_with_the_parser_errors(content, tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    onnx = Artifact(path, sha256_file(path), False, "fp32")
    with pytest.raises(HarnessError) as info:
        build_plan(onnx, PlanSettings(), "bad-onnx")
    assert "\n" not in str(info.value) and "cannot parse" in str(info.value) and str(path) in str(info.value)
