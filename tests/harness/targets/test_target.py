"""The Target abstraction: what each kind accepts, what it refuses (one line), and what it records.

An ONNX file without a card is accepted only when it can be told to be the boundary (a harness export, or a
graph whose normalisation ``inspect`` reads inside it); class counts and names must be the data's."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest

from exporters.onnx_file import write_metadata
from harness.data.base import SegmentationData
from harness.errors import HarnessError
from harness.fileio import sha256_file
from harness.targets.card import boundary_card
from harness.targets.target import (
    TARGET_KINDS,
    Target,
    builtin_target,
    onnx_target,
    plan_target,
    target_engine,
    torch_model,
    torch_target,
)

CONVENTIONS = ("boundary", "norm_outside", "nhwc", "bgr", "grey", "uint8_norm_inside", "softmax",
               "log_softmax", "sigmoid", "binary_logits", "argmax", "quarter", "two_outputs", "fp16_io",
               "fixed_1024", "nhwc_output")
# Without a card these cannot be told from the boundary by their graph: everything else must be refused.
TELLABLE_WITHOUT_CARD = ("boundary", "bgr")  # bgr: a channel swap inside the graph looks like the boundary


def _data(names=("background", "object", "edge")) -> SegmentationData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    labels = rng.integers(0, len(names), (2, 64, 64), dtype=np.uint8)
    return SegmentationData("folder", "val", list(names), images, labels, ["a", "b"])


def _two_class_data() -> SegmentationData:
    return _data(("background", "foreground"))


@pytest.mark.parametrize("name", CONVENTIONS)
def test_every_convention_with_its_card_is_a_target_with_the_datas_classes(convention_onnx, name):
    path, card = convention_onnx(name)
    data = _two_class_data() if name in ("sigmoid", "binary_logits") else _data()
    target = onnx_target(path, card, data)
    assert target.kind == "onnx" and not target.white_box
    assert target.name == card.name == path.stem
    assert target.card.num_classes == data.num_classes
    assert target.sha256 == sha256_file(path)
    described = target.describe()
    assert described["kind"] == "onnx" and described["path"] == str(path) and described["sha256"] == target.sha256
    assert described["card"]["num_classes"] == data.num_classes and described["card"]["output"]["kind"] == \
        card.output.kind


@pytest.mark.parametrize("name", [c for c in CONVENTIONS if c not in TELLABLE_WITHOUT_CARD])
def test_an_onnx_file_without_a_card_is_refused_unless_it_is_the_boundary(convention_onnx, name):
    path, _ = convention_onnx(name)
    data = _two_class_data() if name in ("sigmoid", "binary_logits") else _data()
    with pytest.raises(HarnessError) as caught:
        onnx_target(path, None, data)
    message = str(caught.value)
    assert "\n" not in message
    assert f"python -m harness inspect {path} --card card.toml" in message or "card" in message


def test_a_boundary_graph_normalised_inside_needs_no_card(convention_onnx):
    path, _ = convention_onnx("boundary")
    target = onnx_target(path, None, _data())
    assert target.card.is_boundary and target.card.num_classes == 3 and target.name == path.stem


def test_a_harness_export_needs_no_card_but_must_hold_the_datas_classes(convention_onnx, tmp_path):
    source, _ = convention_onnx("norm_outside")  # no normalisation inside: only the metadata vouches for it
    model = onnx.load(str(source))
    write_metadata(model, {"model": "mine", "class_names": ["background", "object", "edge"]})
    path = tmp_path / "export.onnx"
    onnx.save(model, str(path))
    assert onnx_target(path, None, _data()).card.is_boundary
    with pytest.raises(HarnessError, match="was exported for the classes background, object, edge"):
        onnx_target(path, None, _data(("sky", "road", "car")))


def test_a_class_count_that_is_not_the_datas_is_one_line(convention_onnx):
    path, card = convention_onnx("boundary", num_classes=5)
    with pytest.raises(HarnessError, match=r"has 5 classes \(its output\), the data has 3"):
        onnx_target(path, replace(card, num_classes=None), _data())
    with pytest.raises(HarnessError, match=r"has 5 classes \(its output\), the data has 3"):
        onnx_target(path, None, _data())  # no card: the boundary, and the graph's own class count
    path, card = convention_onnx("argmax")
    with pytest.raises(HarnessError, match=r"has 4 classes \(card num_classes\), the data has 3"):
        onnx_target(path, replace(card, num_classes=4), _data())


def test_class_names_that_differ_from_the_datas_with_the_same_count_are_refused(convention_onnx):
    path, card = convention_onnx("softmax")
    named = replace(card, class_names=("background", "edge", "object"))  # same names, another order
    with pytest.raises(HarnessError, match="silent relabelling"):
        onnx_target(path, named, _data())
    assert onnx_target(path, replace(card, class_names=("background", "object", "edge")), _data())


def test_a_card_with_unknown_fields_is_refused_naming_them(convention_onnx):
    path, card = convention_onnx("norm_outside")
    unknown = replace(card, input=replace(card.input, mean=None, std=None), unknown=("input.mean", "input.std"))
    with pytest.raises(HarnessError, match='input.mean, input.std are "unknown"'):
        onnx_target(path, unknown, _data())


def test_missing_and_unreadable_files_are_one_line(tmp_path):
    with pytest.raises(HarnessError, match="does not exist"):
        onnx_target(tmp_path / "missing.onnx", None, _data())
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(HarnessError, match="not a readable ONNX model|fails the ONNX checker"):
        onnx_target(tmp_path / "broken.onnx", None, _data())
    with pytest.raises(HarnessError, match="is not a regular file"):
        onnx_target(tmp_path, boundary_card(), _data())
    with pytest.raises(HarnessError, match="TensorRT plan .* does not exist"):
        plan_target(tmp_path / "missing.plan", boundary_card(), _data())


def test_a_plan_needs_a_card_unless_the_harness_built_it(tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not really a plan")  # a plan is only read by TensorRT, when its engine is entered
    with pytest.raises(HarnessError, match="cannot tell how to feed TensorRT plan"):
        plan_target(plan, None, _data())
    target = plan_target(plan, replace(boundary_card(), name="deployed"), _data())
    assert (target.kind, target.name, target.sha256) == ("plan", "deployed", sha256_file(plan))
    with pytest.raises(HarnessError, match="runs on --engine trt, not ort"):
        target_engine(target, "ort", "fp32", None, _data())


def test_onnx_and_plan_targets_have_no_pytorch_model_for_white_box_attacks(convention_onnx):
    path, card = convention_onnx("boundary")
    target = onnx_target(path, card, _data())
    with pytest.raises(HarnessError) as caught:
        torch_model(target, _data())
    message = str(caught.value)
    assert "--torch MODULE:CALLABLE" in message and "blackbox" in message and "transfer" in message
    with pytest.raises(HarnessError, match="runs on --engine ort or trt, not torch"):
        target_engine(target, "torch", "fp32", None, _data())


def test_weights_and_checkpoints_that_are_target_files_say_which_option_to_use(tmp_path):
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"x")
    with pytest.raises(HarnessError, match="that is an ONNX file: use --onnx FILE"):
        builtin_target("fcn8s-vgg16", "reduced", str(onnx_file), None, _data())
    with pytest.raises(HarnessError, match="that is an ONNX file: use --onnx FILE"):
        builtin_target("fcn8s-vgg16", "reduced", None, str(onnx_file), _data())
    with pytest.raises(HarnessError, match="that is an ONNX file: use --onnx FILE"):
        torch_target("mymodels:build", str(onnx_file), None, _data())
    with pytest.raises(HarnessError, match="that is a TensorRT plan: use --plan FILE"):
        torch_target("mymodels:build", str(tmp_path / "model.engine"), None, _data())
    with pytest.raises(HarnessError, match="weight file .* does not exist"):
        torch_target("mymodels:build", str(tmp_path / "missing.pth"), None, _data())
    with pytest.raises(HarnessError, match="both name the model's weights"):
        builtin_target("fcn8s-vgg16", "reduced", "a.safetensors", "b.pth", _data())


def test_a_torch_target_is_named_by_its_card_or_callable_and_hashed_by_its_weights(tmp_path):
    target = torch_target("mymodels:build_unet", None, None, _data())
    assert (target.kind, target.name, target.white_box, target.card.num_classes) == ("torch", "build_unet", True, 3)
    assert len(target.sha256) == 64 and target.path is None and target.entry == "mymodels:build_unet"
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"weights")
    named = torch_target("mymodels:build_unet", str(weights), replace(boundary_card(), name="unet"), _data())
    assert (named.name, named.sha256, named.path) == ("unet", sha256_file(weights), weights)
    assert named.describe()["entry"] == "mymodels:build_unet"


def test_a_builtin_target_is_the_boundary_with_the_datas_classes():
    target = builtin_target("fcn8s-vgg16", "reduced", None, None, _data())
    assert isinstance(target, Target) and target.kind in TARGET_KINDS and target.white_box
    assert target.card.is_boundary and target.card.class_names == ("background", "object", "edge")
    assert (target.name, target.size) == ("fcn8s-vgg16", "reduced")
    with pytest.raises(HarnessError, match="no trained fcn8s-vgg16 .* run: python -m harness train"):
        torch_model(target, _data())
