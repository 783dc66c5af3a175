"""The ONNX Runtime engine: input validation, batching to its limit, counters and description."""

from __future__ import annotations

import numpy as np
import pytest

from engines.factory import create_engine
from engines.ort_engine import OrtEngine
from harness.errors import HarnessError


@pytest.fixture(scope="module")
def ort_engine(loaded_model, synthetic_val):
    model, source = loaded_model("fcn8s-vgg16")
    with create_engine("ort", model, source, synthetic_val, max_batch=4) as engine:
        yield engine


@pytest.fixture(scope="module")
def images(synthetic_val):
    return synthetic_val.tensors(slice(0, 10))[0].numpy()


@pytest.mark.parametrize("bad, words", [
    (lambda x: x.astype(np.float64), "float32"),
    (lambda x: (x * 255).astype(np.uint8), "float32"),
    (lambda x: x[0], "(N, 3, H, W)"),
    (lambda x: x[:, :1], "(N, 3, H, W)"),
    (lambda x: x[:0], "N >= 1"),
    (lambda x: x * 255, "[0, 1]"),
    (lambda x: x - 0.5, "[0, 1]"),
    (lambda x: np.where(x > 0.5, np.nan, x).astype(np.float32), "[0, 1]"),
    (lambda x: x[:, :, :16, :16], "at least 32x32"),
    (lambda x: x.tolist(), "numpy array"),
])
def test_bad_input_is_a_one_line_error(ort_engine, images, bad, words):
    before = ort_engine.queries
    with pytest.raises(HarnessError) as info:
        ort_engine.infer(bad(images))
    assert words in str(info.value) and "\n" not in str(info.value) and info.value.exit_code == 2
    assert ort_engine.queries == before


def test_batches_are_split_to_the_engine_limit_and_counted(ort_engine, images):
    assert ort_engine.max_batch == 4
    before, seconds = ort_engine.queries, ort_engine.seconds
    all_at_once = ort_engine.infer(images)  # 10 images: batches of 4, 4, 2
    one_by_one = np.concatenate([ort_engine.infer(images[i:i + 1]) for i in range(len(images))])
    assert all_at_once.shape == (10, 7, 64, 64) and all_at_once.dtype == np.float32
    assert np.abs(all_at_once - one_by_one).max() < 1e-4
    assert ort_engine.queries - before == 20 and ort_engine.seconds > seconds


def test_engine_describes_itself(ort_engine):
    info = ort_engine.info.as_dict()
    assert info["name"] == "ort" and info["precision"] == "fp32"
    assert info["device"] == "cpu (CPUExecutionProvider)" and info["library_version"].startswith("onnxruntime ")
    assert len(info["artifact_sha256"]) == 64


def test_engine_outside_its_with_block_refuses_to_run(ort_engine, images):
    engine = OrtEngine(ort_engine.path)
    with pytest.raises(HarnessError, match="outside its 'with' block"):
        engine.infer(images)
