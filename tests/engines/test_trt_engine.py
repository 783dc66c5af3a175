"""The TensorRT engine: input checks against the plan's profile, a corrupt plan, eval through trt.

Needs TensorRT 10+ and an NVIDIA GPU; skips with the reason otherwise (and checks the error instead).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from engines.availability import tensorrt_missing
from engines.factory import create_engine
from engines.trt_engine import TrtEngine, plan_load_failure
from harness.cli import main
from harness.errors import HarnessError

MISSING = tensorrt_missing()
needs_tensorrt = pytest.mark.skipif(MISSING is not None, reason=f"TensorRT engine unavailable: {MISSING}")


@pytest.mark.skipif(MISSING is None, reason="TensorRT is usable here; the missing-TensorRT error is not reachable")
def test_trt_without_tensorrt_or_gpu_is_a_one_line_error(loaded_model, synthetic_val, capsys, tmp_path):
    model, source = loaded_model("fcn8s-vgg16")
    with pytest.raises(HarnessError) as info:
        create_engine("trt", model, source, synthetic_val)
    assert "\n" not in str(info.value) and info.value.exit_code == 2 and MISSING in str(info.value)
    with pytest.raises(HarnessError):
        with TrtEngine(tmp_path / "any.plan"):
            pass
    assert main(["eval", "--model", "fcn8s-vgg16", "--engine", "trt", "--n-images", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and MISSING in err


@pytest.mark.parametrize("manifest, cause", [
    (None, "corrupt, or built by another TensorRT version or for another GPU"),
    ("not json", "corrupt, or built by another TensorRT version or for another GPU"),
    ({"key": ["a", "list"]}, "corrupt, or built by another TensorRT version or for another GPU"),
    ({"key": {"tensorrt": "10.13.3.9", "gpu": "NVIDIA A100-SXM4-80GB"}},
     "it was built by TensorRT 10.13.3.9 on NVIDIA A100-SXM4-80GB, this is TensorRT 11.4.0.31 on"),
])
def test_a_plan_that_does_not_load_says_what_built_it(manifest, cause, tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"plan")
    if manifest is not None:
        (tmp_path / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    message = plan_load_failure(plan, "11.4.0.31", "Serialization assertion failed: magic tag")
    assert "\n" not in message and str(plan) in message and cause in message, message
    assert "(Serialization assertion failed: magic tag)" in message and "rebuild it" in message


@needs_tensorrt
@pytest.mark.gpu
def test_trt_engine_checks_inputs_against_its_profile(loaded_model, synthetic_val):
    model, source = loaded_model("fcn8s-vgg16")
    with create_engine("trt", model, source, synthetic_val, max_batch=8) as engine:
        assert engine.info.name == "trt" and engine.info.device == "cuda" and engine.max_batch == 8
        images = synthetic_val.tensors(slice(0, 20))[0].numpy()
        logits = engine.infer(images)  # 20 images in batches of at most 8
        assert logits.shape == (20, synthetic_val.num_classes, 64, 64) and logits.dtype == np.float32
        assert engine.queries == 20
        with pytest.raises(HarnessError, match="takes images of"):
            engine.infer(np.zeros((1, 3, 96, 96), np.float32))  # the profile is built for 64 x 64


@needs_tensorrt
@pytest.mark.gpu
def test_corrupt_plan_is_a_one_line_error(tmp_path):
    plan = tmp_path / "corrupt.plan"
    plan.write_bytes(b"not a TensorRT plan" * 100)
    with pytest.raises(HarnessError) as info:
        with TrtEngine(plan):
            pass
    assert "\n" not in str(info.value) and "cannot load TensorRT plan" in str(info.value)
