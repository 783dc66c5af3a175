"""torch -> ONNX fp32: graph contract, metadata, dynamic axes, and parity with PyTorch on every reduced model."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.defs
import pytest
import torch

from engines.ort_engine import OrtEngine
from engines.torch_engine import TorchEngine
from exporters.artifacts import ModelSource, onnx_artifact
from exporters.onnx_export import (
    DEFAULT_OPSET,
    MIN_OPSET,
    export_onnx,
    exported_graph,
    graph_opset,
    max_opset,
    supported_opsets,
)
from exporters.onnx_file import INPUT_NAME, OUTPUT_NAME, load_onnx, read_metadata
from exporters.parity import DEFAULT_MIN_AGREEMENT, compare
from harness import __version__
from harness.errors import HarnessError
from harness.models import MODELS, build_model

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
    assert graph_opset(model) == DEFAULT_OPSET
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
    assert meta["precision"] == "fp32" and meta["opset"] == DEFAULT_OPSET


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


def test_supported_opsets_come_from_the_installed_exporter():
    supported = supported_opsets()
    assert supported.start == MIN_OPSET and DEFAULT_OPSET in supported
    assert supported.stop - 1 == max_opset() <= onnx.defs.onnx_opset_version()


@pytest.mark.parametrize("opset", [-1, 0, 1, MIN_OPSET - 1, "max+1", 1000, 2**31])
def test_an_opset_outside_the_exporters_range_is_refused_before_any_work(opset, tmp_path, capsys):
    opset = max_opset() + 1 if opset == "max+1" else opset
    path = tmp_path / "model.onnx"
    with pytest.raises(HarnessError) as info:
        export_onnx(build_model("fcn8s-vgg16", 3), path, {"model": "fcn8s-vgg16"}, opset=opset)
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == 2 and f"--opset {opset} is not supported" in message
    assert f"{MIN_OPSET} to {max_opset()}" in message
    assert not path.exists() and list(tmp_path.iterdir()) == [] and capsys.readouterr().err == ""


@pytest.mark.parametrize("opset", sorted({MIN_OPSET, max_opset()}))  # DEFAULT_OPSET: the contract test above
def test_the_graph_and_its_metadata_have_the_requested_opset(opset, tmp_path, capsys):
    path = tmp_path / "model.onnx"
    export_onnx(build_model("fcn8s-vgg16", 3), path, {"model": "fcn8s-vgg16"}, opset=opset)
    model = onnx.load(str(path))
    assert graph_opset(model) == opset == read_metadata(model)["opset"]
    assert capsys.readouterr().err == ""  # the exporter's progress and warnings are not the user's


def test_a_conversion_the_exporter_cannot_do_is_one_line_not_a_lying_file(capsys):
    # Beyond what onnx defines the exporter's converter fails, logs a traceback and keeps opset 18;
    # exported_graph is export_onnx without the range check, so this reaches the real exporter.
    opset = onnx.defs.onnx_opset_version() + 1
    with pytest.raises(HarnessError) as info:
        exported_graph(build_model("fcn8s-vgg16", 3).eval(), opset, (64, 64), "fcn8s-vgg16")
    message = str(info.value)
    assert "\n" not in message and f"could not convert fcn8s-vgg16 to opset {opset}" in message
    assert f"came out at opset {DEFAULT_OPSET}" in message
    assert capsys.readouterr().err == ""  # the exporter's traceback was captured, not printed
