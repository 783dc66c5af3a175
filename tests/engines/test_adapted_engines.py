"""OrtEngine with a model card: every I/O convention of tests/onnx_conventions.py gives the boundary's logits
(N, K, H, W), equal to the graph's own output on hand-converted input, converted by hand (numpy; torch's
bilinear resize where the convention resizes). A card that contradicts its graph is one line naming the field."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnxruntime
import pytest
import torch
import torch.nn.functional as F

from engines.ort_engine import OrtEngine
from harness.errors import HarnessError
from harness.targets.card import IMAGENET_MEAN, IMAGENET_STD, LUMA_WEIGHTS, InputSpec, ModelCard, OutputSpec

CONVENTIONS = ("boundary", "norm_outside", "nhwc", "bgr", "grey", "uint8_norm_inside", "softmax",
               "log_softmax", "sigmoid", "binary_logits", "argmax", "quarter", "two_outputs", "fp16_io",
               "fixed_1024", "nhwc_output")
TWO_CLASS = ("sigmoid", "binary_logits")


def _images(n: int = 2, height: int = 64, width: int = 96) -> np.ndarray:
    return np.random.default_rng(1).random((n, 3, height, width), dtype=np.float32)


def _resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return F.interpolate(torch.from_numpy(np.ascontiguousarray(x, np.float32)), size=size, mode="bilinear",
                         align_corners=False).numpy()


def _hand_input(name: str, x: np.ndarray) -> np.ndarray:
    """What a user would feed the graph of ``name`` for boundary images ``x``, written out by hand."""
    mean = np.array(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.array(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)
    return {
        "norm_outside": lambda: (x - mean) / std,
        "nhwc": lambda: x.transpose(0, 2, 3, 1),
        "bgr": lambda: x[:, ::-1],
        "grey": lambda: np.tensordot(np.array(LUMA_WEIGHTS, np.float32), x, axes=([0], [1]))[:, None],
        "uint8_norm_inside": lambda: np.round(x * 255).astype(np.uint8),
        "fp16_io": lambda: x.astype(np.float16),
        "fixed_1024": lambda: _resize(x, (1024, 1024)),
    }.get(name, lambda: x)()


def _hand_logits(name: str, out: np.ndarray, size: tuple[int, int], k: int) -> np.ndarray:
    """The graph's own output of convention ``name`` as boundary logits (N, K, H, W), written out by hand."""
    out = out.astype(np.float32) if out.dtype.kind == "f" else out
    if name == "softmax":
        return np.log(np.clip(out, 1e-12, None))
    if name == "sigmoid":
        return np.concatenate([np.log(np.clip(1 - out, 1e-12, None)), np.log(np.clip(out, 1e-12, None))], axis=1)
    if name == "binary_logits":
        return np.concatenate([np.zeros_like(out), out], axis=1)
    if name == "argmax":
        return np.eye(k, dtype=np.float32)[out].transpose(0, 3, 1, 2)
    if name == "nhwc_output":
        return out.transpose(0, 3, 1, 2)
    if name in ("quarter", "fixed_1024"):
        return _resize(out, size)
    return out


def _session(path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", CONVENTIONS)
def test_each_convention_through_its_card_gives_the_graphs_own_output_as_boundary_logits(convention_onnx, name):
    path, card = convention_onnx(name)
    k = 2 if name in TWO_CLASS else 3
    images = _images()
    with OrtEngine(path, card=card, threads=1) as engine:
        logits = engine.infer(images)
        predicted = engine.predict(images)
        assert engine.has_scores == (name != "argmax")
    session = _session(path)
    raw = session.run([card.output.name], {card.input.name: _hand_input(name, images)})[0]
    expected = _hand_logits(name, raw, images.shape[2:], k)
    assert logits.dtype == np.float32 and logits.shape == (2, k, 64, 96)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    assert predicted.dtype == np.int64 and predicted.shape == (2, 64, 96)
    assert np.array_equal(predicted, logits.argmax(1))


def test_a_boundary_card_does_no_work_and_a_foreign_file_needs_one(convention_onnx):
    import onnxruntime

    path, card = convention_onnx("boundary")
    images = _images()
    with OrtEngine(path, card=card, threads=1) as carded:
        assert carded._adapter is None  # identity: no conversion at all
        got = carded.infer(images)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert np.array_equal(got, session.run(None, {session.get_inputs()[0].name: images})[0])
    # Without a card only the harness's own exports run: a foreign file's I/O may merely look like the boundary.
    with pytest.raises(HarnessError, match="not a harness export"), OrtEngine(path, threads=1):
        pass


def test_the_engine_counts_queries_and_splits_batches_with_a_card(convention_onnx):
    path, card = convention_onnx("nhwc")
    images = _images(5)
    with OrtEngine(path, card=card, max_batch=2, threads=1) as engine:
        split = engine.infer(images)
        assert engine.queries == 5
    with OrtEngine(path, card=card, threads=1) as engine:
        np.testing.assert_allclose(engine.infer(images), split, rtol=1e-5, atol=1e-5)


def _edited(card: ModelCard, **changes) -> ModelCard:
    inp = {k[3:]: v for k, v in changes.items() if k.startswith("in_")}
    out = {k[4:]: v for k, v in changes.items() if k.startswith("out_")}
    top = {k: v for k, v in changes.items() if not k.startswith(("in_", "out_"))}
    return replace(card, input=replace(card.input, **inp), output=replace(card.output, **out), **top)


# A card that contradicts its graph: found on enter (check_card) or on the first batch (the adapter's checks).
WRONG_CARDS = {
    "NHWC graph, NCHW card": ("nhwc", {"in_layout": "NCHW"}, "input.layout"),
    "two outputs, no output.name": ("two_outputs", {"out_name": None}, "output.name"),
    "output.name not in the graph": ("boundary", {"out_name": "scores"}, "output.name"),
    "input.name not in the graph": ("boundary", {"in_name": "x"}, "input.name"),
    "fp16 graph, float32 card": ("fp16_io", {"in_dtype": "float32"}, "input.dtype"),
    "uint8 graph, float32 card": ("uint8_norm_inside", {"in_dtype": "float32", "in_scale": 1.0}, "input.dtype"),
    "fixed size, dynamic card": ("fixed_1024", {"in_size": None}, "input.size"),
    "softmax output read as logits": ("softmax", {"out_kind": "logits"}, "probabilities"),
    "class map read as logits": ("argmax", {"out_kind": "logits", "out_layout": "NCHW"}, "class_map"),
    "quarter resolution read as input": ("quarter", {"out_resolution": "input"}, "output.resolution"),
    "grey graph, rgb card": ("grey", {"in_channels": "rgb", "in_mean": None, "in_std": None}, "input.channels"),
    "NHWC output read as NCHW": ("nhwc_output", {"out_layout": "NCHW"}, "output.layout"),
    "wrong class count": ("boundary", {"num_classes": 5}, "num_classes"),
}


@pytest.mark.parametrize(("name", "changes", "field"), WRONG_CARDS.values(), ids=WRONG_CARDS.keys())
def test_a_card_that_contradicts_its_graph_is_one_line_naming_the_field(convention_onnx, name, changes, field):
    path, card = convention_onnx(name)
    bad = _edited(card, **changes)
    with pytest.raises(HarnessError) as caught:
        with OrtEngine(path, card=bad, threads=1) as engine:
            engine.infer(_images())
    message = str(caught.value)
    assert field in message and "\n" not in message and "Traceback" not in message


def test_a_fixed_size_graph_with_a_dynamic_card_names_the_size_to_set(convention_onnx):
    path, card = convention_onnx("fixed_1024")
    with pytest.raises(HarnessError, match=r"input.size = \[1024, 1024\]"):
        with OrtEngine(path, card=replace(card, input=replace(card.input, size=None)), threads=1) as engine:
            engine.infer(_images())


def test_without_a_card_a_foreign_file_still_meets_the_harness_contract(convention_onnx):
    # Today's behaviour: no card, the harness I/O contract (one float32 NCHW RGB input, one float32 output).
    path, _ = convention_onnx("uint8_norm_inside")
    with pytest.raises(HarnessError, match="float32"):
        with OrtEngine(path, threads=1):
            pass


def test_a_grey_card_feeds_one_channel_and_a_boundary_card_num_classes_is_checked(convention_onnx):
    path, card = convention_onnx("grey")
    with OrtEngine(path, card=card, threads=1) as engine:
        assert engine.model_shape((4, 3, 64, 96)) == (4, 1, 64, 96)
    card = ModelCard(input=InputSpec(name="images"), output=OutputSpec(name="logits"), num_classes=3)
    path, _ = convention_onnx("boundary")
    with OrtEngine(path, card=card, threads=1) as engine:
        assert engine.infer(_images()).shape[1] == 3


class _ClassMap(torch.nn.Module):
    """No parameters; returns an integer class map (N, H, W): brightest channel = class."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.argmax(1)


def test_a_torch_engine_over_a_users_class_map_module_has_no_scores_and_predicts_its_classes():
    from engines.torch_engine import TorchEngine
    from harness.targets.adapter import AdaptedModule

    card = ModelCard(output=OutputSpec(kind="class_map", layout="NHW"), num_classes=3)
    images = _images()
    with TorchEngine(AdaptedModule(_ClassMap(), card, 3)) as engine:  # a module without parameters
        assert not engine.has_scores
        assert np.array_equal(engine.predict(images), images.argmax(1))
        assert engine.infer(images).shape == (2, 3, 64, 96)


def test_a_torch_engine_turns_a_failing_forward_into_one_line():
    from engines.torch_engine import TorchEngine

    with TorchEngine(torch.nn.Conv2d(4, 3, 1)) as engine:  # takes 4 channels, is given 3
        with pytest.raises(HarnessError, match="the PyTorch model failed on a batch of shape"):
            engine.infer(_images())
