"""fp16 and int8 QDQ ONNX on every reduced model: checker, float32 boundary, parity thresholds on ORT CPU."""

from __future__ import annotations

import onnx
import pytest

from engines.ort_engine import OrtEngine
from engines.torch_engine import TorchEngine
from exporters.artifacts import ModelSource, onnx_artifact
from exporters.onnx_file import read_metadata
from exporters.parity import DEFAULT_MIN_AGREEMENT, compare
from harness.models import MODELS

PARITY_IMAGES = 16
CALIBRATION_IMAGES = 32
# Documented in the README: int8 may cost at most this much pixel accuracy (fraction) on the built-in data.
INT8_MAX_ACCURACY_DROP = 0.01


@pytest.fixture(scope="session")
def calibration(synthetic_train):
    return synthetic_train.subset(CALIBRATION_IMAGES)


def _artifact(loaded_model, synthetic_val, name, precision, calibration=None):
    model, source = loaded_model(name)
    return model, source, onnx_artifact(model, ModelSource.from_loaded(source, synthetic_val.class_names),
                                        precision, calibration=calibration)


def _io_types(model: onnx.ModelProto) -> list[int]:
    return [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)]


@pytest.mark.parametrize("name", list(MODELS))
def test_fp16_onnx_validates_keeps_float32_io_and_agrees(name, loaded_model, synthetic_val):
    model, source, artifact = _artifact(loaded_model, synthetic_val, name, "fp16")
    onnx.checker.check_model(str(artifact.path), full_check=True)
    graph = onnx.load(str(artifact.path))
    assert _io_types(graph) == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT]
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.graph.initializer)
    assert read_metadata(graph)["precision"] == "fp16"
    with TorchEngine(model) as ref, OrtEngine(artifact.path) as ort:
        report = compare(ref, ort, synthetic_val.subset(PARITY_IMAGES), label=name, precision="fp16")
    print(f"{name} fp16: agreement {100 * report.agreement:.4f} %, accuracy delta {100 * report.accuracy_delta:+.3f}")
    assert report.agreement >= DEFAULT_MIN_AGREEMENT["fp16"]


@pytest.mark.parametrize("name", list(MODELS))
def test_int8_qdq_runs_on_ort_cpu_within_documented_threshold(name, loaded_model, synthetic_val, calibration):
    model, source, artifact = _artifact(loaded_model, synthetic_val, name, "int8", calibration)
    graph = onnx.load(str(artifact.path))
    ops = {n.op_type for n in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "QLinearConv" not in ops  # QDQ form
    assert _io_types(graph) == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT]
    meta = read_metadata(graph)
    assert meta["precision"] == "int8" and meta["calibration"]["data"]["split"] == "train"
    with TorchEngine(model) as ref, OrtEngine(artifact.path) as ort:
        assert ort.info.precision == "int8" and "CPUExecutionProvider" in ort.info.device
        report = compare(ref, ort, synthetic_val.subset(PARITY_IMAGES), label=name, precision="int8")
    print(f"{name} int8: agreement {100 * report.agreement:.3f} %, accuracy {100 * report.reference_accuracy:.2f} "
          f"-> {100 * report.candidate_accuracy:.2f} %")
    assert report.agreement >= DEFAULT_MIN_AGREEMENT["int8"]
    assert report.accuracy_delta >= -INT8_MAX_ACCURACY_DROP


def test_int8_needs_calibration_images(loaded_model, synthetic_val):
    from harness.errors import HarnessError

    model, source = loaded_model("fcn8s-vgg16")
    with pytest.raises(HarnessError, match="calibration"):
        onnx_artifact(model, ModelSource.from_loaded(source, synthetic_val.class_names), "int8")
