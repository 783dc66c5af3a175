"""Deployment variants of a user's ONNX file (issue 13): fp16 and int8 QDQ made from the user's own file, keyed
by its sha256, calibrated through the card's preprocessing, checked for parity against that file; ``export --onnx``.

Real files throughout: a small U-Net trained briefly and exported with ``torch.onnx.export`` (normalisation
outside the graph, input ``input``), and the convention graphs of tests/onnx_conventions.py.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnx_conventions
import pytest
import user_models
from onnx import numpy_helper

from engines.ort_engine import OrtEngine
from exporters.int8 import quantize_int8
from exporters.onnx_file import read_metadata
from exporters.parity import DEFAULT_MIN_AGREEMENT, compare
from exporters.user_variants import check_variants, own_precision, user_group, user_onnx_variant
from harness.data import SegmentationData
from harness.errors import HarnessError
from harness.fileio import cache_dir
from harness.targets.adapter import Adapter
from harness.targets.card import LAYOUTS, load_card, write_card
from harness.targets.target import onnx_target

PARITY_IMAGES = 16
CALIBRATION_IMAGES = 32


TWO_CLASS = ("sigmoid", "binary_logits")


@pytest.fixture(scope="module")
def user_model(tmp_path_factory, synthetic_train, session_cache):
    return user_models.make_user_model(tmp_path_factory.mktemp("user-unet"), synthetic_train, Path(session_cache))


@pytest.fixture(scope="module")
def val(synthetic_val):
    return synthetic_val.subset(PARITY_IMAGES)


@pytest.fixture(scope="module")
def calibration(synthetic_train):
    return synthetic_train.subset(CALIBRATION_IMAGES)


def _classes(data: SegmentationData, n: int = 3) -> SegmentationData:
    """The synthetic images with ``n`` classes (label mod n): the convention graphs' class count. One random
    3x3 convolution over 7 classes has many near ties; over 3 its int8 agreement is about 99 %."""
    labels = np.where(data.labels == 255, 255, data.labels % n).astype(data.labels.dtype)
    return SegmentationData(f"{data.name}-mod{n}", data.split, ["a", "b", "c"][:n], data.images, labels, data.ids,
                            data.params)


def _io(path: Path) -> list[tuple[str, int]]:
    graph = onnx.load(str(path)).graph
    initializers = {i.name for i in graph.initializer}
    return [(v.name, v.type.tensor_type.elem_type) for v in (*graph.input, *graph.output) if v.name not in initializers]


def _parity(target, artifact, data, precision):
    with OrtEngine(target.path, card=target.card) as reference, OrtEngine(artifact.path, card=target.card) as ort:
        return compare(reference, ort, data, label=target.name, precision=precision)


def test_user_file_variants_keep_its_io_live_under_its_sha256_and_agree(user_model, val, calibration):
    target = onnx_target(user_model.onnx, load_card(user_model.card), val)
    assert target.name == "unet" and own_precision(target) == "fp32"
    itself = user_onnx_variant(target, "fp32", None)
    assert itself.path == target.path and itself.sha256 == target.sha256 and itself.reused
    for precision in ("fp16", "int8"):
        artifact = user_onnx_variant(target, precision, calibration)
        assert artifact.path.parent.parent == cache_dir() / "artifacts" / f"user--{target.sha256[:16]}"
        assert artifact.path.parent.parent.name == user_group(target)
        assert _io(artifact.path) == _io(target.path) == [("input", onnx.TensorProto.FLOAT),
                                                          ("out", onnx.TensorProto.FLOAT)]
        ops = {n.op_type for n in onnx.load(str(artifact.path)).graph.node}
        if precision == "int8":
            assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        report = _parity(target, artifact, val, precision)
        print(f"unet {precision}: agreement {100 * report.agreement:.3f} %, max |dlogit| {report.max_abs_diff:.3g}, "
              f"accuracy {100 * report.reference_accuracy:.2f} -> {100 * report.candidate_accuracy:.2f} %")
        assert report.min_agreement == DEFAULT_MIN_AGREEMENT[precision] and report.passed
        assert report.reference_accuracy > 0.75  # a model that predicts more than the background
        assert report.max_abs_diff > (1e-3 if precision == "int8" else 0)  # the variant's arithmetic really ran
        assert user_onnx_variant(target, precision, calibration).reused


def _input_scale(path: Path, input_name: str) -> float:
    """The scale of the QuantizeLinear that quantises the graph input (symmetric int8: max |x| / 127)."""
    graph = onnx.load(str(path)).graph
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    (node,) = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == input_name]
    return float(initializers[node.input[1]])


def test_int8_calibration_sees_what_the_card_feeds_the_model(user_model, calibration, val, tmp_path):
    card = load_card(user_model.card)
    images = calibration.tensors(slice(None))[0].numpy()
    fed = Adapter(card).to_model_numpy(images)
    assert fed.min() < -1.5 and fed.max() > 2  # ImageNet-normalised, not [0, 1]
    quantize_int8(user_model.onnx, tmp_path / "card.onnx", calibration, card=card)
    assert _input_scale(tmp_path / "card.onnx", "input") == pytest.approx(np.abs(fed).max() / 127, rel=1e-3)
    # The same file calibrated on raw [0, 1] pixels (the mistake the card prevents) records other ranges.
    raw = dataclasses.replace(card, input=dataclasses.replace(card.input, mean=None, std=None))
    quantize_int8(user_model.onnx, tmp_path / "raw.onnx", calibration, card=raw)
    assert _input_scale(tmp_path / "raw.onnx", "input") == pytest.approx(images.max() / 127, rel=1e-3)


def test_a_changed_byte_of_the_weights_gets_a_new_variant(user_model, val, calibration, tmp_path):
    path = tmp_path / "unet.onnx"
    shutil.copyfile(user_model.onnx, path)
    card = load_card(user_model.card)
    original = onnx_target(path, card, val)
    first = user_onnx_variant(original, "int8", calibration)
    assert user_onnx_variant(onnx_target(path, card, val), "int8", calibration).reused
    model = onnx.load(str(path))
    weight = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    raw = bytearray(weight.raw_data)
    raw[0] ^= 1  # one byte of one weight: another file, another sha256
    weight.raw_data = bytes(raw)
    onnx.save(model, str(path))
    changed = onnx_target(path, card, val)
    fresh = user_onnx_variant(changed, "int8", calibration)
    assert changed.sha256 != original.sha256 and fresh.path != first.path and user_group(changed) in str(fresh.path)
    # Made from the changed file (reused only when the session cache already holds this very file's variant).
    assert read_metadata(onnx.load(str(fresh.path)))["parent_sha256"] == changed.sha256
    # The card is part of the int8 key: the same file calibrated through another card is another variant.
    other = dataclasses.replace(card, input=dataclasses.replace(card.input, mean=None, std=None))
    assert user_onnx_variant(onnx_target(path, other, val), "int8", calibration).path != fresh.path


@pytest.mark.parametrize("name", onnx_conventions.CONVENTIONS)
def test_int8_variant_of_each_convention_keeps_its_io_and_passes_parity(name, convention_onnx, synthetic_train,
                                                                        synthetic_val):
    n = 2 if name in TWO_CLASS else 3
    path, card = convention_onnx(name, n)
    # 1024 x 1024 model inputs (the fixed_1024 graph): a few images keep it fast.
    calibration_images, parity_images = (2, 4) if name == "fixed_1024" else (CALIBRATION_IMAGES, PARITY_IMAGES)
    val = _classes(synthetic_val.subset(parity_images), n)
    calibration = _classes(synthetic_train.subset(calibration_images), n)
    target = onnx_target(path, card, val)
    artifact = user_onnx_variant(target, "int8", calibration)
    assert _io(artifact.path) == _io(path)  # uint8 / float16 inputs, class maps, two outputs: kept as they are
    report = _parity(target, artifact, val, "int8")
    print(f"{name} int8: agreement {100 * report.agreement:.3f} %")
    assert report.passed and report.max_abs_diff > 1e-3


@pytest.mark.parametrize("batch", [1, 2])
def test_int8_of_a_fixed_batch_graph_is_calibrated_in_its_batch(batch, convention_onnx, synthetic_train,
                                                               synthetic_val, tmp_path):
    """A graph whose batch dimension is fixed (common from other exporters) is calibrated in groups of that
    batch, the last one padded: 3 calibration images through a batch-2 graph."""
    source, card = convention_onnx("boundary", 3)
    model = onnx.load(str(source))
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_value = batch
    path = tmp_path / f"batch{batch}.onnx"
    onnx.save(model, str(path))
    val = _classes(synthetic_val.subset(PARITY_IMAGES), 3)
    target = onnx_target(path, card, val)
    artifact = user_onnx_variant(target, "int8", _classes(synthetic_train.subset(3), 3))
    assert _io(artifact.path) == _io(path)
    assert _parity(target, artifact, val, "int8").passed


def test_an_fp16_io_graph_is_its_own_fp16_variant_and_has_no_fp32_one(convention_onnx, synthetic_val):
    path, card = convention_onnx("fp16_io")
    target = onnx_target(path, card, _classes(synthetic_val.subset(4)))
    assert own_precision(target) == "fp16"
    assert user_onnx_variant(target, "fp16", None).path == path
    with pytest.raises(HarnessError, match="fp16 graph already.*no fp32 one"):
        check_variants(target, ["fp16", "fp32"])


def test_a_qdq_file_is_int8_already(user_model, val, calibration):
    target = onnx_target(user_model.onnx, load_card(user_model.card), val)
    int8 = user_onnx_variant(target, "int8", calibration)
    quantised = onnx_target(int8.path, target.card, val)
    assert user_onnx_variant(quantised, "int8", None).path == int8.path
    for precision in ("fp32", "fp16"):
        with pytest.raises(HarnessError, match="int8 \\(QDQ\\) graph already"):
            user_onnx_variant(quantised, precision, None)
    with pytest.raises(HarnessError, match="calibration images"):
        user_onnx_variant(target, "int8", None)


# --- the export command ---------------------------------------------------------------------------------------

def test_export_onnx_writes_variants_and_a_parity_table_against_the_users_file(user_model, run_cli, tmp_path):
    out, report = tmp_path / "out", tmp_path / "parity.json"
    code, printed, err = run_cli(["export", "--onnx", str(user_model.onnx), "--card", str(user_model.card),
                                  "--precision", "fp32", "fp16", "int8", "--n-images", str(PARITY_IMAGES),
                                  "--calibration-images", str(CALIBRATION_IMAGES), "--out", str(out),
                                  "--json", str(report)])
    assert code == 0, err
    printed = " ".join(printed.split())  # the console wraps long lines
    assert "Parity against unet's fp32 ONNX" in printed and "acc fp32 onnx" in printed and "FAIL" not in printed
    assert "fp32 already: it is its own fp32 variant" in printed and "the file itself" in printed
    for precision in ("fp16", "int8"):
        assert _io(out / f"unet.{precision}.onnx") == _io(user_model.onnx)
    doc = json.loads(report.read_text())
    assert doc["reference"]["kind"] == "onnx" and doc["reference"]["name"] == "unet"
    rows = {a["precision"]: a for a in doc["artifacts"]}
    assert rows["fp32"]["is_reference"] and rows["fp32"]["parity"] is None
    for precision in ("fp16", "int8"):
        assert rows[precision]["parity"]["passed"]
        assert rows[precision]["parity"]["min_agreement"] == DEFAULT_MIN_AGREEMENT[precision]


def test_export_says_an_fp16_graph_is_fp16_already(convention_onnx, run_cli, tmp_path):
    path, card = convention_onnx("fp16_io", 7)  # the CLI's data: the 7 synthetic classes
    write_card(card, tmp_path / "card.toml")
    code, printed, err = run_cli(["export", "--onnx", str(path), "--card", str(tmp_path / "card.toml"),
                                  "--precision", "fp16", "--n-images", "2"])
    assert code == 0, err
    assert "is fp16 already: it is its own fp16 variant" in " ".join(printed.split())
    code, _, err = run_cli(["export", "--onnx", str(path), "--card", str(tmp_path / "card.toml"),
                            "--precision", "fp32", "--n-images", "2"])
    assert code == 2 and "no fp32 one" in err and len(err.strip().splitlines()) == 1


def test_export_below_the_threshold_exits_1(convention_onnx, run_cli, tmp_path):
    path, card = convention_onnx("nhwc", 7)
    write_card(card, tmp_path / "card.toml")
    code, printed, err = run_cli(["export", "--onnx", str(path), "--card", str(tmp_path / "card.toml"),
                                  "--precision", "int8", "--n-images", "4", "--calibration-images", "16",
                                  "--min-agreement", "100"])
    assert code == 1 and "FAIL" in printed
    assert len(err.strip().splitlines()) == 1 and "parity below threshold: nhwc-7 int8" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--torch", "user_unet:build"], "export makes variants of --model NAME or --onnx FILE"),
    (["--plan", "model.plan"], "a TensorRT plan is a deployment artifact already"),
    (["--onnx", "missing.onnx", "--card", "missing.toml"], "missing"),
    (["--model", "fcn8s-vgg16", "--card", "card.toml"], "describe"),
    (["--onnx", "model.onnx", "--all"], "--all"),
    (["--onnx", "model.onnx", "--opset", "17"], "--opset applies to the torch -> ONNX export of --model"),
])
def test_export_refusals_are_one_line_with_exit_2(argv, message, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["export", *argv])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_export_of_a_file_without_a_card_names_inspect(user_model, run_cli):
    code, _, err = run_cli(["export", "--onnx", str(user_model.onnx), "--precision", "int8"])
    assert code == 2 and "inspect" in err and len(err.strip().splitlines()) == 1


def test_a_plan_profile_takes_the_models_own_input_shape():
    from exporters.cache import cache_key
    from exporters.tensorrt_plan import PlanSettings, plan_key_fields

    assert PlanSettings(height=8, width=6).input_shape(2) == (2, 3, 8, 6)  # a harness export: NCHW RGB
    assert PlanSettings(height=8, width=6, layout="NHWC", channels=1).input_shape(2) == (2, 8, 6, 1)
    gpu = {"gpu": "g", "compute_capability": "9.0"}
    keys = {cache_key(plan_key_fields("0" * 64, PlanSettings(layout=layout), "10.13", gpu)) for layout in LAYOUTS}
    assert len(keys) == 2
    for bad in ({"layout": "NHW"}, {"channels": 4}):
        with pytest.raises(HarnessError, match="NCHW or NHWC with 1 or 3 channels"):
            PlanSettings(**bad)


def test_export_of_a_plan_without_a_gpu_is_one_line(user_model, run_cli):
    from engines.availability import tensorrt_missing

    if tensorrt_missing() is None:
        pytest.skip("TensorRT is usable here")
    code, _, err = run_cli(["export", "--onnx", str(user_model.onnx), "--card", str(user_model.card),
                            "--format", "trt", "--precision", "int8"])
    assert code == 2 and err.startswith("error: engine trt on cuda is not usable here: ")
    assert len(err.strip().splitlines()) == 1
