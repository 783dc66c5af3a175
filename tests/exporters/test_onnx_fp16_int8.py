"""fp16 and int8 QDQ ONNX on every reduced model: checker, float32 boundary, parity thresholds on ORT CPU."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from engines.ort_engine import OrtEngine
from engines.torch_engine import TorchEngine
from exporters.artifacts import ModelSource, onnx_artifact
from exporters.onnx_file import read_metadata
from exporters.parity import DEFAULT_MIN_AGREEMENT, compare
from harness.models import MODELS

PARITY_IMAGES = 16
CALIBRATION_IMAGES = 32
# What int8 promises on the briefly trained test models. Their overall argmax agreement with fp32 depends on
# which weights training produced, and those depend on the thread count that trained them (float summation
# order), not on ONNX Runtime's threads: see conftest's int8_min_agreement. Agreement alone proves little on
# a model that predicts mostly one class, so the bounds below add the logits. Measured on the four models
# trained with 1 and with 2 threads: a correct quantisation has a relative logit error of 0.02-0.07 and keeps
# every confident pixel; scales off by x1.25 or x0.8 (weights) or x0.25 (activations) give 0.56-2.1.
INT8_MAX_ACCURACY_DROP = 0.01  # documented in the README (fraction of pixel accuracy)
INT8_MAX_RELATIVE_LOGIT_ERROR = 0.15  # mean |Δlogit| / mean |logit - pixel mean|; measured 0.02-0.07
CONFIDENT_MARGIN = 1.0  # logits: pixels whose top-2 margin in fp32 is at least this ...
INT8_MIN_CONFIDENT_AGREEMENT = 0.995  # ... keep their class (measured 100 % on 76-82 % of the pixels)
INT8_MIN_MAX_LOGIT_DIFF = 1e-3  # int8 arithmetic really ran (fp32 differs by 1e-5 at most)


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


def _unquantised_convolutions(graph: onnx.ModelProto) -> list[str]:
    """Convolutions that do not read int8 weights and quantised activations through DequantizeLinear."""
    produced_by = {out: node for node in graph.graph.node for out in node.output}
    int8_initializers = {i.name for i in graph.graph.initializer if i.data_type == onnx.TensorProto.INT8}

    def dequantized(name: str, of_int8_initializer: bool) -> bool:
        node = produced_by.get(name)
        if node is None or node.op_type != "DequantizeLinear":
            return False
        return node.input[0] in int8_initializers if of_int8_initializer else True

    convolutions = [n for n in graph.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert convolutions
    return [n.name for n in convolutions if not (dequantized(n.input[0], False) and dequantized(n.input[1], True))]


def _logit_agreement(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(mean |Δlogit| relative to the logits' spread around each pixel's mean, argmax agreement on the pixels
    whose reference top-2 margin is at least CONFIDENT_MARGIN)."""
    spread = np.abs(reference - reference.mean(axis=1, keepdims=True)).mean()
    relative = float(np.abs(reference - candidate).mean() / spread)
    top2 = np.sort(reference, axis=1)[:, -2:]
    confident = top2[:, 1] - top2[:, 0] >= CONFIDENT_MARGIN
    assert confident.mean() > 0.5  # the promise below must cover most pixels
    same = reference.argmax(1) == candidate.argmax(1)
    return relative, float(same[confident].mean())


@pytest.mark.parametrize("name", list(MODELS))
def test_int8_qdq_runs_on_ort_cpu_within_documented_threshold(name, loaded_model, synthetic_val, calibration,
                                                              int8_min_agreement):
    model, source, artifact = _artifact(loaded_model, synthetic_val, name, "int8", calibration)
    graph = onnx.load(str(artifact.path))
    ops = {n.op_type for n in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "QLinearConv" not in ops  # QDQ form
    assert _unquantised_convolutions(graph) == []
    assert _io_types(graph) == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT]
    meta = read_metadata(graph)
    assert meta["precision"] == "int8" and meta["calibration"]["data"]["split"] == "train"
    data = synthetic_val.subset(PARITY_IMAGES)
    images = data.tensors(slice(0, PARITY_IMAGES))[0].numpy()
    with TorchEngine(model) as ref, OrtEngine(artifact.path) as ort:
        assert ort.info.precision == "int8" and "CPUExecutionProvider" in ort.info.device
        report = compare(ref, ort, data, label=name, precision="int8", min_agreement=int8_min_agreement)
        relative, confident = _logit_agreement(ref.infer(images), ort.infer(images))
    print(f"{name} int8: agreement {100 * report.agreement:.3f} %, confident pixels {100 * confident:.3f} %, "
          f"relative logit error {relative:.3f}, accuracy {100 * report.reference_accuracy:.2f} "
          f"-> {100 * report.candidate_accuracy:.2f} %")
    assert report.max_abs_diff >= INT8_MIN_MAX_LOGIT_DIFF
    assert relative <= INT8_MAX_RELATIVE_LOGIT_ERROR
    assert confident >= INT8_MIN_CONFIDENT_AGREEMENT
    assert report.passed and report.agreement >= int8_min_agreement
    assert report.accuracy_delta >= -INT8_MAX_ACCURACY_DROP


@pytest.mark.parametrize(("scaled", "factor"), [("weights", 1.25), ("activations", 0.25)])
def test_the_int8_bounds_fail_a_quantisation_with_wrong_scales(scaled, factor, loaded_model, synthetic_val,
                                                              calibration, tmp_path):
    # The bounds above must tell a broken quantisation from a correct one: scale every weight (or activation)
    # scale of the correct QDQ graph, as a calibration or export bug would, and check they catch it.
    model, _, artifact = _artifact(loaded_model, synthetic_val, "fcn-resnet50", "int8", calibration)
    graph = onnx.load(str(artifact.path))
    initializers = {i.name: i for i in graph.graph.initializer}
    scales = {n.input[1] for n in graph.graph.node
              if n.op_type == "DequantizeLinear" and (n.input[0] in initializers) == (scaled == "weights")}
    for name in scales:
        value = numpy_helper.to_array(initializers[name]) * np.float32(factor)
        initializers[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    broken = tmp_path / "broken.int8.onnx"
    onnx.save(graph, str(broken))
    images = synthetic_val.tensors(slice(0, PARITY_IMAGES))[0].numpy()
    with TorchEngine(model) as ref, OrtEngine(broken) as ort:
        relative, confident = _logit_agreement(ref.infer(images), ort.infer(images))
    assert relative > INT8_MAX_RELATIVE_LOGIT_ERROR
    assert confident < INT8_MIN_CONFIDENT_AGREEMENT


def test_int8_needs_calibration_images(loaded_model, synthetic_val):
    from harness.errors import HarnessError

    model, source = loaded_model("fcn8s-vgg16")
    with pytest.raises(HarnessError, match="calibration"):
        onnx_artifact(model, ModelSource.from_loaded(source, synthetic_val.class_names), "int8")
