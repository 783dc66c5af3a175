"""Real ONNX graphs in the I/O conventions users deploy, each with the model card that describes it correctly.

Every graph is built with ``onnx.helper`` at opset 17: the convention's preprocessing where it lives inside the
graph (a normalisation, a cast, a transpose, a channel permutation), a 3x3 convolution with seeded random weights
(``numpy.random.default_rng(0)``) and the convention's output operator. They are small enough to run in ONNX
Runtime in milliseconds (``fixed_1024`` included). :func:`build_lraspp` exports torchvision's LR-ASPP
MobileNetV3 the usual way (``torch.onnx.export``), the third-party case of issue 13.

Loaded by the ``convention_onnx`` fixture of tests/conftest.py; no test state lives here.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CONVENTIONS = ("boundary", "norm_outside", "nhwc", "bgr", "grey", "uint8_norm_inside", "softmax",
               "log_softmax", "sigmoid", "binary_logits", "argmax", "quarter", "two_outputs", "fp16_io",
               "fixed_1024", "nhwc_output")
OPSET = 17
FIXED_SIZE = (1024, 1024)
GREY_MEAN, GREY_STD = 0.449, 0.226  # one number for a one-channel model (the mean of ImageNet's three)
_MEAN = (0.485, 0.456, 0.406)  # ImageNet, RGB order (as harness.targets.card.IMAGENET_MEAN)
_STD = (0.229, 0.224, 0.225)


# Conventions that change the input side and the output side; a name "a+b" combines one of each (e.g.
# "nhwc+softmax"), which :data:`COMBINATIONS` lists (minus the pairs that contradict each other).
INPUT_SIDE = ("norm_outside", "nhwc", "bgr", "grey", "uint8_norm_inside", "fp16_io", "fixed_1024")
OUTPUT_SIDE = ("softmax", "log_softmax", "sigmoid", "binary_logits", "argmax", "quarter", "two_outputs", "nhwc_output")
_EXCLUSIVE = ({"grey", "bgr"}, {"uint8_norm_inside", "fp16_io"}, {"uint8_norm_inside", "norm_outside"},
              {"softmax", "log_softmax", "sigmoid", "binary_logits", "argmax"}, {"argmax", "nhwc_output"})
_KINDS = {"softmax": "probabilities", "log_softmax": "log_probabilities", "sigmoid": "sigmoid",
          "binary_logits": "binary_logits", "argmax": "class_map"}


def features(name: str) -> frozenset[str]:
    """The conventions of ``name`` (one of :data:`CONVENTIONS`, or several joined by "+"); ValueError otherwise."""
    parts = frozenset(name.split("+"))
    unknown = sorted(parts - set(CONVENTIONS))
    if unknown:
        raise ValueError(f"unknown convention {unknown[0]!r}; choose from {CONVENTIONS}")
    if len(parts) != len(name.split("+")) or ("boundary" in parts and len(parts) > 1):
        raise ValueError(f"{name!r}: boundary stands alone, and each convention is named once")
    clash = next((group & parts for group in _EXCLUSIVE if len(group & parts) > 1), None)
    if clash:
        raise ValueError(f"{name!r}: {' and '.join(sorted(clash))} contradict each other")
    return parts


def _valid(name: str) -> bool:
    try:
        features(name)
    except ValueError:
        return False
    return True


COMBINATIONS = tuple(f"{a}+{b}" for a in INPUT_SIDE for b in OUTPUT_SIDE if _valid(f"{a}+{b}"))


def build_convention(name: str, path: Path, num_classes: int = 3) -> tuple[Path, Any]:
    """Write the graph of convention ``name`` (or a "+"-joined combination) to ``path``; return ``(path, card)``,
    the card a ModelCard that describes the graph's I/O correctly (what a user would write after checking
    ``inspect``'s guess)."""
    model = build_graph(name, num_classes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return path, convention_card(name, num_classes, path.stem)


def build_graph(name: str, num_classes: int = 3) -> onnx.ModelProto:
    """The checked ONNX graph of convention ``name`` with ``num_classes`` output classes (>= 2)."""
    if num_classes < 2:
        raise ValueError("num_classes must be at least 2")
    model = _Graph(features(name), num_classes).model()
    onnx.checker.check_model(model, full_check=True)
    return model


def convention_card(name: str, num_classes: int = 3, model_name: str | None = None) -> Any:
    """The ModelCard that correctly describes the graph of convention ``name``."""
    from harness.targets.card import IMAGENET_MEAN, IMAGENET_STD, InputSpec, ModelCard, OutputSpec

    f = features(name)
    if f == {"boundary"}:
        return ModelCard(name=model_name, input=InputSpec(name="images"), output=OutputSpec(name="logits"),
                         num_classes=num_classes)
    inp = InputSpec(name="input", layout="NHWC" if "nhwc" in f else "NCHW",
                    channels="grey" if "grey" in f else "bgr" if "bgr" in f else "rgb",
                    dtype="uint8" if "uint8_norm_inside" in f else "float16" if "fp16_io" in f else "float32",
                    scale=255.0 if "uint8_norm_inside" in f else 1.0, size=FIXED_SIZE if "fixed_1024" in f else None)
    if "norm_outside" in f:
        inp = replace(inp, mean=tuple(IMAGENET_MEAN), std=tuple(IMAGENET_STD))
    kind = next((_KINDS[c] for c in f if c in _KINDS), "logits")
    out = OutputSpec(name="out" if "two_outputs" in f else "output", kind=kind,
                     layout="NHW" if kind == "class_map" else "NHWC" if "nhwc_output" in f else "NCHW",
                     resolution="reduced" if "quarter" in f else "input")
    classes = 2 if kind in ("sigmoid", "binary_logits") else num_classes
    return ModelCard(name=model_name, input=inp, output=out, num_classes=classes)


class _Graph:
    """Builds one convention's graph: preprocessing -> 3x3 conv -> output operators."""

    def __init__(self, conventions: frozenset[str], num_classes: int) -> None:
        self.f = conventions
        self.k = num_classes
        self.rng = np.random.default_rng(0)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"{op}_{len(self.nodes)}", **attrs))
        return output

    def conv(self, x: str, c_in: int, c_out: int, tag: str = "conv") -> str:
        weight = self.rng.normal(0.0, 0.5, size=(c_out, c_in, 3, 3)).astype(np.float32)
        bias = self.rng.normal(0.0, 0.1, size=(c_out,)).astype(np.float32)
        return self.node("Conv", [x, self.const(f"{tag}.weight", weight), self.const(f"{tag}.bias", bias)],
                         f"{tag}_out", kernel_shape=[3, 3], pads=[1, 1, 1, 1])

    def normalise(self, x: str, channels: int = 3, scale: float = 1.0) -> str:
        """(x - mean) / std with ImageNet's constants (times ``scale``) broadcast over NCHW."""
        mean = np.array(_MEAN if channels == 3 else (GREY_MEAN,), np.float32).reshape(1, channels, 1, 1) * scale
        std = np.array(_STD if channels == 3 else (GREY_STD,), np.float32).reshape(1, channels, 1, 1) * scale
        x = self.node("Sub", [x, self.const("norm.mean", mean)], "centred")
        return self.node("Div", [x, self.const("norm.std", std)], "normalised")

    def model(self) -> onnx.ModelProto:
        f, n, k = self.f, "N", self.k
        boundary = f == {"boundary"}
        hw: list[int | str] = list(FIXED_SIZE) if "fixed_1024" in f else ["H", "W"]
        in_name, out_name = ("images", "logits") if boundary else ("input", "out" if "two_outputs" in f else "output")
        in_type = TensorProto.UINT8 if "uint8_norm_inside" in f else \
            TensorProto.FLOAT16 if "fp16_io" in f else TensorProto.FLOAT
        channels = 1 if "grey" in f else 3
        x = in_name
        if "nhwc" in f:
            x = self.node("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
        if "uint8_norm_inside" in f or "fp16_io" in f:
            x = self.node("Cast", [x], "as_float", to=TensorProto.FLOAT)
        if "bgr" in f:  # BGR in, RGB to the network: invisible from outside, only the card can say it
            x = self.node("Gather", [x, self.const("bgr_to_rgb", np.array([2, 1, 0], np.int64))], "rgb", axis=1)
        if "norm_outside" not in f:
            x = self.normalise(x, channels, 255.0 if "uint8_norm_inside" in f else 1.0)
        c_out = 1 if f & {"sigmoid", "binary_logits"} else k
        y = self.conv(x, channels, c_out)
        out_hw: list[int | str] = hw
        if "quarter" in f:  # before the output operator: an ArgMax's integers cannot be pooled
            y = self.node("AveragePool", [y], "pooled", kernel_shape=[4, 4], strides=[4, 4])
            out_hw = [d // 4 for d in hw] if "fixed_1024" in f else ["H_4", "W_4"]  # type: ignore[operator]
        out_type, out_shape = TensorProto.FLOAT, [n, c_out, *out_hw]
        if "softmax" in f:
            y = self.node("Softmax", [y], "probabilities", axis=1)
        elif "log_softmax" in f:
            y = self.node("LogSoftmax", [y], "log_probabilities", axis=1)
        elif "sigmoid" in f:
            y = self.node("Sigmoid", [y], "probability")
        elif "argmax" in f:
            y = self.node("ArgMax", [y], "classes", axis=1, keepdims=0)
            out_type, out_shape = TensorProto.INT64, [n, *out_hw]
        if "nhwc_output" in f:
            y = self.node("Transpose", [y], "nhwc", perm=[0, 2, 3, 1])
            out_shape = [n, *out_hw, c_out]
        if "fp16_io" in f and out_type == TensorProto.FLOAT:
            y = self.node("Cast", [y], "as_half", to=TensorProto.FLOAT16)
            out_type = TensorProto.FLOAT16
        if "two_outputs" in f:  # aux first: the card's output.name, not the order, picks the logits
            aux = self.conv(x, channels, k, tag="aux")
            self.node("Identity", [aux], "aux")
            self.outputs.append(helper.make_tensor_value_info("aux", TensorProto.FLOAT, [n, k, *hw]))
        self.node("Identity", [y], out_name)
        self.outputs.append(helper.make_tensor_value_info(out_name, out_type, out_shape))
        in_shape = [n, *hw, channels] if "nhwc" in f else [n, channels, *hw]
        graph = helper.make_graph(self.nodes, "convention_" + "+".join(sorted(f)),
                                  [helper.make_tensor_value_info(in_name, in_type, in_shape)], self.outputs,
                                  self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="onnx_conventions", producer_version="1")
        model.ir_version = 8  # opset 17's IR version: readable by every onnxruntime the harness supports
        return model


def build_lraspp(path: Path, num_classes: int = 3, size: int = 64) -> tuple[Path, Any]:
    """torchvision's ``lraspp_mobilenet_v3_large`` (random weights, no aux head) exported with
    ``torch.onnx.export`` at ``size`` x ``size`` with dynamic batch, height and width; returns ``(path, card)``.
    torchvision's models take ImageNet-normalised images (the normalisation is a transform, outside the graph)
    and return ``{"out": logits}`` at the input's resolution."""
    import torch
    import torchvision

    from harness.targets.card import IMAGENET_MEAN, IMAGENET_STD, InputSpec, ModelCard, OutputSpec

    torch.manual_seed(0)
    model = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=num_classes).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {"input": {0: "N", 2: "H", 3: "W"}, "out": {0: "N", 2: "H", 3: "W"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: still the usual way
        torch.onnx.export(model, (torch.rand(1, 3, size, size),), str(path), input_names=["input"],
                          output_names=["out"], dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    card = ModelCard(name=path.stem, input=InputSpec(name="input", mean=tuple(IMAGENET_MEAN),
                                                     std=tuple(IMAGENET_STD)),
                     output=OutputSpec(name="out"), num_classes=num_classes)
    return path, card
