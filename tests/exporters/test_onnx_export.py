"""torch -> ONNX fp32: graph contract, metadata, dynamic axes, and parity with PyTorch on every reduced model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from engines.ort_engine import OrtEngine
from engines.torch_engine import TorchEngine
from exporters.artifacts import ModelSource, onnx_artifact
from exporters.onnx_file import INPUT_NAME, OUTPUT_NAME, load_onnx, read_metadata
from exporters.parity import DEFAULT_MIN_AGREEMENT, compare
from harness import __version__
from harness.models import MODELS

PARITY_IMAGES = 16


def _fp32(loaded_model, synthetic_val, name):
    model, source = loaded_model(name)
    artifact = onnx_artifact(model, ModelSource.from_loaded(source, synthetic_val.class_names), "fp32")
    return model, source, artifact


@pytest.mark.parametrize("name", list(MODELS))
def test_fp32_onnx_on_onnxruntime_agrees_with_pytorch(name, loaded_model, synthetic_val):
    model, source, artifact = _fp32(loaded_model, synthetic_val, name)
    data = synthetic_val.subset(PARITY_IMAGES)
    with TorchEngine(model, artifact_sha256=source["sha256"]) as ref, OrtEngine(artifact.path) as ort:
        report = compare(ref, ort, data, label=name, precision="fp32")
    print(f"{name} fp32: agreement {100 * report.agreement:.4f} %, max |dlogit| {report.max_abs_diff:.2g}")
    assert DEFAULT_MIN_AGREEMENT["fp32"] == 0.999
    assert report.agreement >= 0.999
    assert report.max_abs_diff < 1e-3
    assert report.candidate_accuracy == pytest.approx(report.reference_accuracy, abs=1e-3)


def test_fp32_graph_has_the_harness_contract_and_metadata(loaded_model, synthetic_val):
    _, source, artifact = _fp32(loaded_model, synthetic_val, "fcn8s-vgg16")
    model = load_onnx(artifact.path)  # runs the full checker
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (x,), (y,) = model.graph.input, model.graph.output
    assert (x.name, y.name) == (INPUT_NAME, OUTPUT_NAME)
    for value in (x, y):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        dims = value.type.tensor_type.shape.dim
        assert [bool(dims[i].dim_param) for i in (0, 2, 3)] == [True, True, True]  # batch, H, W dynamic
    assert x.type.tensor_type.shape.dim[1].dim_value == 3
    assert y.type.tensor_type.shape.dim[1].dim_value == len(synthetic_val.class_names)
    meta = read_metadata(model)
    assert meta["class_names"] == synthetic_val.class_names
    assert meta["input_range"] == [0.0, 1.0]
    assert meta["source_sha256"] == source["sha256"]
    assert meta["harness_version"] == __version__
    assert meta["precision"] == "fp32"


def test_fp32_graph_runs_other_batch_sizes_and_image_sizes(loaded_model, synthetic_val):
    model, _, artifact = _fp32(loaded_model, synthetic_val, "fcn8s-vgg16")
    images = torch.rand(3, 3, 96, 80, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(images).numpy()
    with OrtEngine(artifact.path) as ort:
        got = ort.infer(images.numpy())
    assert got.shape == expected.shape == (3, len(synthetic_val.class_names), 96, 80)
    assert np.abs(got - expected).max() < 1e-3


def test_export_is_cached_by_checkpoint_hash(loaded_model, synthetic_val):
    _, _, first = _fp32(loaded_model, synthetic_val, "fcn8s-vgg16")
    _, _, again = _fp32(loaded_model, synthetic_val, "fcn8s-vgg16")
    assert again.reused and again.path == first.path and again.sha256 == first.sha256
