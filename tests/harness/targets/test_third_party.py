"""ONNX files from third parties, in conventions beyond tests/onnx_conventions.py (issue 13's acceptance): each
either works after ``inspect`` and an edited card, with the very numbers of a hand computation through
onnxruntime and numpy, or stops with one line (exit 2, no traceback) naming what is not supported or which card
field to edit. A silent wrong number is the one outcome never accepted.

Every graph is built here with ``onnx.helper`` (tf2onnx's names and NHWC softmax, opsets 11 and the newest, fixed
batches, external weights, Resize inside, flattened or 5-d outputs, float and bool class maps, hostile metadata,
...). The data are a folder of 60x100 images (non-square, not divisible by 8) with 3-class and 2-class masks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from engines.ort_engine import OrtEngine
from harness.data.folder import load_folder
from harness.errors import HarnessError
from harness.targets.adapter import Adapter
from harness.targets.card import ModelCard, OutputSpec, load_card, reduced_size_fits
from harness.targets.onnx_io import metadata_keys, onnx_sha256, printable, read_graph_info

H, W = 60, 100  # the data's size: non-square, not divisible by 8
IMAGENET_MEAN = np.array((0.485, 0.456, 0.406), np.float32).reshape(1, 3, 1, 1)
IMAGENET_STD = np.array((0.229, 0.224, 0.225), np.float32).reshape(1, 3, 1, 1)
NAMES3 = ("background", "object", "edge")
NAMES2 = ("background", "foreground")
F32, F64, I64 = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64
LATEST_OPSET = onnx.defs.onnx_opset_version()


# ---------------------------------------------------------------- graph building

class _Builder:
    """Nodes and initializers of one graph; seeded random convolutions."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, value: np.ndarray) -> str:
        name = f"c{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op: str, inputs: list[str], output: str | None = None, **attrs: object) -> str:
        output = output or f"t{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"n{len(self.nodes)}", **attrs))
        return output

    def conv(self, x: str, c_in: int = 3, c_out: int = 3, stride: int = 1) -> str:
        weight = self.rng.normal(0.0, 0.5, size=(c_out, c_in, 3, 3)).astype(np.float32)
        bias = self.rng.normal(0.0, 0.1, size=(c_out,)).astype(np.float32)
        return self.op("Conv", [x, self.const(weight), self.const(bias)], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                       strides=[stride, stride])

    def normalise(self, x: str) -> str:
        """ImageNet's (x - mean) / std inside the graph, NCHW."""
        return self.op("Div", [self.op("Sub", [x, self.const(IMAGENET_MEAN)]), self.const(IMAGENET_STD)])

    def model(self, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto], opset: int = 17,
              producer: tuple[str, str] = ("a-third-party", "1.0"), ir: int | None = None,
              check: bool = True) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "third_party", inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name=producer[0],
                                  producer_version=producer[1])
        model.ir_version = ir if ir is not None else 8 if opset <= 17 else model.ir_version  # 8: read by every ORT
        if check:
            onnx.checker.check_model(model, full_check=True)
        return model


def _vi(name: str, elem: int, shape: list[int | str] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


# ---------------------------------------------------------------- the cases

@dataclass(frozen=True)
class Case:
    """One third party's file: ``build`` returns the graph; ``edits`` are the ``--card-set`` a user applies after
    reading inspect's table; ``reference(session, images)`` the predicted classes (N, H, W) by hand (None: refused,
    ``refused`` = (stage, words the line must hold))."""

    name: str
    build: Callable[[], onnx.ModelProto]
    edits: tuple[str, ...] = ()
    reference: Callable[[onnxruntime.InferenceSession, np.ndarray], np.ndarray] | None = None
    refused: tuple[str, str] | None = None
    classes: int = 3
    batch: int = 2


def _run(session: onnxruntime.InferenceSession, feed: dict[str, np.ndarray], output: str | None = None) -> np.ndarray:
    return session.run([output] if output else None, feed)[0]


def _upsampled(scores: np.ndarray) -> np.ndarray:
    """Scores (N, K, h, w) -> (N, K, H, W), bilinear (the documented policy for output.resolution = reduced)."""
    return F.interpolate(torch.from_numpy(scores.astype(np.float32)), size=(H, W), mode="bilinear",
                         align_corners=False).numpy()


def tf2onnx_softmax() -> onnx.ModelProto:
    """Keras -> tf2onnx: NHWC "input_1:0" in [0, 255] rescaled inside (x / 127.5 - 1), NHWC softmax "Identity:0"."""
    b = _Builder()
    x = b.op("Add", [b.op("Mul", ["input_1:0", b.const(np.float32(1 / 127.5))]), b.const(np.float32(-1))])
    y = b.conv(b.op("Transpose", [x], perm=[0, 3, 1, 2]))
    y = b.op("Softmax", [b.op("Transpose", [y], perm=[0, 2, 3, 1])], axis=-1)
    b.op("Identity", [y], "Identity:0")
    return b.model([_vi("input_1:0", F32, ["unk__10", "unk__11", "unk__12", 3])],
                   [_vi("Identity:0", F32, ["unk__10", "unk__13", "unk__14", 3])], opset=13,
                   producer=("tf2onnx", "1.16.1 15c810"))


def ref_tf2onnx(s, images):
    return _run(s, {"input_1:0": images.transpose(0, 2, 3, 1) * 255}).argmax(-1)


def tf2onnx_opset11() -> onnx.ModelProto:
    """Opset 11's Softmax flattens from its axis: on the last axis of NHWC it is still per pixel."""
    b = _Builder()
    y = b.conv(b.op("Transpose", [b.op("Mul", ["input_1:0", b.const(np.float32(1 / 255))])], perm=[0, 3, 1, 2]))
    y = b.op("Softmax", [b.op("Transpose", [y], perm=[0, 2, 3, 1])], "Identity:0", axis=3)
    return b.model([_vi("input_1:0", F32, ["unk__1", "unk__2", "unk__3", 3])],
                   [_vi("Identity:0", F32, ["unk__1", "unk__4", "unk__5", 3])], opset=11, producer=("tf2onnx", "1.9"))


def ref_opset11(s, images):
    return _run(s, {"input_1:0": images.transpose(0, 2, 3, 1) * 255}).argmax(-1)


def softmax_over_pixels() -> onnx.ModelProto:
    """Opset 11 Softmax(axis=1) on NCHW: normalised over C*H*W together, not per pixel."""
    b = _Builder()
    b.op("Softmax", [b.conv(b.normalise("x"))], "y", axis=1)
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", F32, ["N", 3, "H", "W"])], opset=11)


def two_images() -> onnx.ModelProto:
    b = _Builder()
    b.op("Identity", [b.conv(b.op("Add", ["a", "b"]))], "y")
    return b.model([_vi("a", F32, ["N", 3, "H", "W"]), _vi("b", F32, ["N", 3, "H", "W"])],
                   [_vi("y", F32, ["N", 3, "H", "W"])])


def threshold_input(default: bool) -> Callable[[], onnx.ModelProto]:
    def build() -> onnx.ModelProto:
        b = _Builder()
        b.op("Mul", [b.conv(b.normalise("x")), "threshold"], "y")
        if default:
            b.initializers.append(numpy_helper.from_array(np.float32(2.0), "threshold"))
        return b.model([_vi("x", F32, ["N", 3, "H", "W"]), _vi("threshold", F32, [])],
                       [_vi("y", F32, ["N", 3, "H", "W"])])
    return build


def ref_threshold_default(s, images):
    return _run(s, {"x": images}).argmax(1)  # the threshold's default from the file


def image_with_default() -> onnx.ModelProto:
    """The only input has a default value in the file (an initializer of its name): nothing left to feed."""
    b = _Builder()
    b.op("Identity", [b.conv(b.normalise("x"))], "y")
    b.initializers.append(numpy_helper.from_array(np.zeros((1, 3, 8, 8), np.float32), "x"))
    return b.model([_vi("x", F32, [1, 3, 8, 8])], [_vi("y", F32, [1, 3, 8, 8])])


def rank3_input() -> onnx.ModelProto:
    b = _Builder()
    x = b.op("Unsqueeze", [b.op("Transpose", ["x"], perm=[2, 0, 1]), b.const(np.array([0], np.int64))])
    b.op("Identity", [b.conv(x)], "y")
    return b.model([_vi("x", F32, ["H", "W", 3])], [_vi("y", F32, [1, 3, "H", "W"])])


def typed_input(elem: int) -> Callable[[], onnx.ModelProto]:
    def build() -> onnx.ModelProto:
        b = _Builder()
        b.op("Identity", [b.conv(b.op("Cast", ["x"], to=F32))], "y")
        return b.model([_vi("x", elem, ["N", 3, "H", "W"])], [_vi("y", F32, ["N", 3, "H", "W"])])
    return build


def float64_output() -> onnx.ModelProto:
    b = _Builder()
    b.op("Cast", [b.conv(b.normalise("x"))], "y", to=F64)
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", F64, ["N", 3, "H", "W"])])


def ref_nchw_logits(s, images):
    return _run(s, {"x": images}).argmax(1)


def five_d_output() -> onnx.ModelProto:
    b = _Builder()
    b.op("Unsqueeze", [b.conv(b.normalise("x")), b.const(np.array([1], np.int64))], "y")
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", F32, ["N", 1, 3, "H", "W"])])


def float_class_map() -> onnx.ModelProto:
    b = _Builder()
    b.op("Cast", [b.op("ArgMax", [b.conv(b.normalise("x"))], axis=1, keepdims=0)], "y", to=F32)
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", F32, ["N", "H", "W"])])


def ref_class_map(s, images):
    return _run(s, {"x": images}).reshape(len(images), H, W).astype(np.int64)


def nhwc_class_map() -> onnx.ModelProto:
    b = _Builder()
    y = b.op("ArgMax", [b.conv(b.normalise("x"))], axis=1, keepdims=1)
    b.op("Transpose", [y], "y", perm=[0, 2, 3, 1])
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", I64, ["N", "H", "W", 1])])


def bool_class_map() -> onnx.ModelProto:
    b = _Builder()
    y = b.op("Squeeze", [b.conv(b.normalise("x"), c_out=1), b.const(np.array([1], np.int64))])
    b.op("Greater", [y, b.const(np.float32(0.0))], "y")
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", TensorProto.BOOL, ["N", "H", "W"])])


def flattened_scores(stride: int = 1, k: int = 3) -> onnx.ModelProto:
    """(N, H*W, K): classes on the last axis of a rank-3 tensor (a transformer's token layout)."""
    b = _Builder()
    y = b.op("Transpose", [b.conv(b.normalise("x"), c_out=k, stride=stride)], perm=[0, 2, 3, 1])
    b.op("Reshape", [y, b.const(np.array([0, -1, k], np.int64))], "y")
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", F32, ["N", "HW", k])])


def all_dynamic_nchw() -> onnx.ModelProto:
    """Every axis a named dim, the input's and the output's names unrelated; normalisation outside."""
    b = _Builder()
    b.op("Identity", [b.conv("pixel_values")], "logits")
    return b.model([_vi("pixel_values", F32, ["batch_size", "num_channels", "height", "width"])],
                   [_vi("logits", F32, ["batch", "classes", "rows", "cols"])])


def ref_imagenet_outside(s, images):
    return _run(s, {"pixel_values": (images - IMAGENET_MEAN) / IMAGENET_STD}).argmax(1)


def all_dynamic_nhwc() -> onnx.ModelProto:
    b = _Builder()
    y = b.conv(b.normalise(b.op("Transpose", ["x"], perm=[0, 3, 1, 2])))
    b.op("Identity", [y], "y")
    return b.model([_vi("x", F32, ["a", "b", "c", "d"])], [_vi("y", F32, ["e", "f", "g", "h"])])


def ref_nhwc_in_nchw_out(s, images):
    return _run(s, {"x": images.transpose(0, 2, 3, 1).copy()}).argmax(1)


def fixed_batch(n: int) -> Callable[[], onnx.ModelProto]:
    def build() -> onnx.ModelProto:
        b = _Builder()
        b.op("Identity", [b.conv(b.normalise("x"))], "y")
        return b.model([_vi("x", F32, [n, 3, "H", "W"])], [_vi("y", F32, [n, 3, "H", "W"])])
    return build


def ref_fixed_batch(n: int):
    def ref(s, images):
        out = []
        for image in images:  # one at a time, padded with copies of itself to the fixed batch
            out.append(_run(s, {"x": np.repeat(image[None], n, axis=0)})[0])
        return np.stack(out).argmax(1)
    return ref


def nan_on_black() -> onnx.ModelProto:
    """x / max(x): NaN for an all-black image, fine for every other."""
    b = _Builder()
    top = b.op("ReduceMax", ["x"], axes=[1, 2, 3], keepdims=1)
    b.op("Identity", [b.conv(b.normalise(b.op("Div", ["x", top])))], "y")
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", F32, ["N", 3, "H", "W"])], opset=17)


def ref_nan_on_black(s, images):
    return _run(s, {"x": images}).argmax(1)


def nan_always() -> onnx.ModelProto:
    b = _Builder()
    b.op("Identity", [b.conv(b.op("Sqrt", [b.op("Sub", ["x", b.const(np.float32(0.5))])]))], "y")
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", F32, ["N", 3, "H", "W"])])


def multilabel_sigmoid() -> onnx.ModelProto:
    b = _Builder()
    b.op("Sigmoid", [b.conv(b.normalise("x"))], "y")
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", F32, ["N", 3, "H", "W"])])


def eighth_resolution() -> onnx.ModelProto:
    """Stride 8: a 60x100 image gives 8x13 scores (ceil), not a whole eighth."""
    b = _Builder()
    b.op("Identity", [b.conv(b.normalise("x"), stride=8)], "y")
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", F32, ["N", 3, "h", "w"])])


def ref_eighth(s, images):
    return _upsampled(_run(s, {"x": images})).argmax(1)


def resize_inside() -> onnx.ModelProto:
    """Resized to half inside, normalised, convolved, resized back to the input's own size (read with Shape)."""
    b = _Builder()
    half = b.op("Resize", ["x", "", b.const(np.array([1, 1, 0.5, 0.5], np.float32))], mode="linear")
    y = b.conv(b.normalise(half))
    size = b.op("Shape", ["x"])
    b.op("Resize", [y, "", "", size], "y", mode="linear")
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", F32, ["N", 3, "H", "W"])])


def needs_multiple_of_16() -> onnx.ModelProto:
    """A skip connection around a /16 pool: only sizes divisible by 16 run."""
    b = _Builder()
    x = b.normalise("x")
    low = b.op("Resize", [b.op("MaxPool", [x], kernel_shape=[16, 16], strides=[16, 16]), "",
                          b.const(np.array([1, 1, 16, 16], np.float32))], mode="nearest")
    b.op("Identity", [b.conv(b.op("Add", [x, low]))], "y")
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", F32, ["N", 3, "H", "W"])])


def huge_dim(where: str) -> Callable[[], onnx.ModelProto]:
    def build() -> onnx.ModelProto:
        b = _Builder()
        y = b.conv(b.normalise("x"))
        b.op("Reshape", [y, b.op("Shape", [y])], "y")  # a shape shape inference cannot follow: declared dims stand
        shape_in: list[int | str] = ["N", 3, "H", "W"]
        shape_out: list[int | str] = ["N", 3, "H", "W"]
        if where == "input":
            shape_in = [1, 3, 1 << 40, 1 << 40]
        elif where == "batch":
            shape_in = [1 << 40, 3, "H", "W"]
        else:
            shape_out = ["N", 1 << 40, "H", "W"]
        return b.model([_vi("x", F32, shape_in)], [_vi("y", F32, shape_out)])
    return build


def batch_mixing() -> onnx.ModelProto:
    """Subtracts the batch's mean output (a BatchNorm exported in training mode does the like)."""
    b = _Builder()
    y = b.conv(b.normalise("x"))
    b.op("Sub", [y, b.op("ReduceMean", [y], axes=[0], keepdims=1)], "y")
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", F32, ["N", 3, "H", "W"])], opset=17)


def batch_mixing_aux() -> onnx.ModelProto:
    """Per-image scores "out", beside an auxiliary output centred on its batch's mean (not the one scored)."""
    b = _Builder()
    y = b.conv(b.normalise("x"))
    b.op("Sub", [y, b.op("ReduceMean", [y], axes=[0], keepdims=1)], "centred")
    b.op("Identity", [y], "out")
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("centred", F32, ["N", 3, "H", "W"]),
                                                        _vi("out", F32, ["N", 3, "H", "W"])], opset=17)


def ref_out(s, images):
    return _run(s, {"x": images}, "out").argmax(1)


def latest_opset() -> onnx.ModelProto:
    """The newest opset and IR version this onnx writes (ONNX Runtime may not read them yet)."""
    b = _Builder()
    b.op("Identity", [b.conv(b.normalise("x"))], "y")
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", F32, ["N", 3, "H", "W"])], opset=LATEST_OPSET,
                   ir=onnx.IR_VERSION)


def hostile_metadata() -> onnx.ModelProto:
    b = _Builder()
    b.op("Identity", [b.conv(b.normalise("x"))], "y")
    model = b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", F32, ["N", 3, "H", "W"])],
                    producer=("evil\x1b[2J\x1b]0;pwned\x07\r\n", "9" * 100_000))
    for key, value in (("\x1b[31mred\x1b[0m", "x"), ("big", "A" * 1_000_000), ("class_names", "\x00\x1b" * 1000),
                       ("labels", json.dumps(["bg\nx", "obj", "edge"])), ("names", "[" * 100_000),
                       *((f"key{i}", "v") for i in range(2000))):
        model.metadata_props.add(key=key, value=value)
    return model


def tf_uint8_nhwc() -> onnx.ModelProto:
    """TF object-detection style: uint8 NHWC "image_tensor:0", cast and scaled inside."""
    b = _Builder()
    x = b.op("Mul", [b.op("Cast", ["image_tensor:0"], to=F32), b.const(np.float32(1 / 255))])
    y = b.conv(b.normalise(b.op("Transpose", [x], perm=[0, 3, 1, 2])))
    b.op("Identity", [y], "logits:0")
    return b.model([_vi("image_tensor:0", TensorProto.UINT8, ["unk__1", "unk__2", "unk__3", 3])],
                   [_vi("logits:0", F32, ["unk__1", 3, "unk__2", "unk__3"])], opset=13)


def ref_uint8_nhwc(s, images):
    return _run(s, {"image_tensor:0": np.round(images * 255).astype(np.uint8).transpose(0, 2, 3, 1).copy()}).argmax(1)


def argmax_keepdims() -> onnx.ModelProto:
    b = _Builder()
    b.op("ArgMax", [b.conv(b.normalise("x"))], "y", axis=1, keepdims=1)
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", I64, ["N", 1, "H", "W"])])


def output_fixed_size() -> onnx.ModelProto:
    """Scores resized to a fixed 64x64 whatever the input's size."""
    b = _Builder()
    y = b.conv(b.normalise("x"))
    size = b.op("Concat", [b.op("Slice", [b.op("Shape", [y]), b.const(np.array([0], np.int64)),
                                           b.const(np.array([2], np.int64))]), b.const(np.array([64, 64], np.int64))],
                axis=0)
    b.op("Resize", [y, "", "", size], "y", mode="linear")
    return b.model([_vi("x", F32, ["N", 3, "H", "W"])], [_vi("y", F32, ["N", 3, 64, 64])])


def undeclared_shape(which: str) -> Callable[[], onnx.ModelProto]:
    def build() -> onnx.ModelProto:
        b = _Builder()
        b.op("Identity", [b.conv(b.normalise("x"))], "y")
        x_shape = None if which == "input" else ["N", 3, "H", "W"]
        y_shape = None if which == "output" else ["N", 3, "H", "W"]
        return b.model([_vi("x", F32, x_shape)], [_vi("y", F32, y_shape)], check=False)
    return build


def square_symbol() -> onnx.ModelProto:
    """One dim name for both sides ("S", "S"): the exporter says square, the graph runs any size."""
    b = _Builder()
    b.op("Identity", [b.conv(b.normalise("x"))], "y")
    return b.model([_vi("x", F32, ["N", 3, "S", "S"])], [_vi("y", F32, ["N", 3, "S", "S"])])


CASES = (
    Case("tf2onnx_nhwc_softmax", tf2onnx_softmax, reference=ref_tf2onnx),
    Case("tf2onnx_opset11", tf2onnx_opset11, reference=ref_opset11),
    Case("softmax_over_pixels", softmax_over_pixels, refused=("inspect", "softmax")),
    Case("two_image_inputs", two_images, refused=("inspect", "2 inputs")),
    Case("scalar_threshold_input", threshold_input(False), refused=("inspect", "2 inputs")),
    Case("input_with_default", threshold_input(True), reference=ref_threshold_default),
    Case("image_input_with_default", image_with_default, refused=("inspect", "no input to feed")),
    Case("rank3_hwc_input", rank3_input, refused=("inspect", "rank 4")),
    Case("int32_input", typed_input(TensorProto.INT32), refused=("inspect", "int32")),
    Case("int8_input", typed_input(TensorProto.INT8), refused=("inspect", "int8")),
    Case("float64_input", typed_input(F64), refused=("inspect", "float64")),
    Case("bool_input", typed_input(TensorProto.BOOL), refused=("inspect", "bool")),
    Case("float64_output", float64_output, reference=ref_nchw_logits),
    Case("five_d_output", five_d_output, refused=("inspect", "not supported")),
    Case("float_class_map", float_class_map, edits=("num_classes=3",), reference=ref_class_map),
    Case("nhwc_class_map_1_channel", nhwc_class_map, edits=("num_classes=3",), reference=ref_class_map),
    Case("bool_class_map", bool_class_map, edits=("num_classes=2",), reference=ref_class_map, classes=2),
    Case("flattened_n_hw_k", flattened_scores, refused=("inspect", "not supported")),
    Case("all_dynamic_nchw", all_dynamic_nchw, edits=("input.mean=imagenet", "input.std=imagenet"),
         reference=ref_imagenet_outside),
    Case("all_dynamic_nhwc", all_dynamic_nhwc, reference=ref_nhwc_in_nchw_out),
    Case("batch_fixed_1", fixed_batch(1), reference=ref_fixed_batch(1), batch=3),
    Case("batch_fixed_2", fixed_batch(2), reference=ref_fixed_batch(2), batch=3),
    Case("nan_on_black", nan_on_black, edits=("input.mean=none", "input.std=none"), reference=ref_nan_on_black),
    Case("nan_always", nan_always, refused=("eval", "NaN")),
    Case("multilabel_sigmoid", multilabel_sigmoid, refused=("inspect", "multi-label")),
    Case("eighth_resolution_60x100", eighth_resolution, reference=ref_eighth),
    Case("resize_inside", resize_inside, reference=ref_nchw_logits),
    Case("needs_multiple_of_16", needs_multiple_of_16, refused=("eval", "size")),
    Case("huge_input_dims", huge_dim("input"), refused=("inspect", "8192")),
    Case("huge_fixed_batch", huge_dim("batch"), refused=("inspect", "batch")),
    Case("huge_output_dim", huge_dim("output"), refused=("eval", "at most 255 classes")),
    Case("hostile_metadata", hostile_metadata, reference=ref_nchw_logits),
    Case("batch_mixing", batch_mixing, refused=("inspect", "batch")),
    Case("batch_mixing_aux_output", batch_mixing_aux, reference=ref_out),
    Case("latest_opset", latest_opset, reference=ref_nchw_logits),
    Case("tf_uint8_nhwc", tf_uint8_nhwc, reference=ref_uint8_nhwc),
    Case("argmax_keepdims_nchw", argmax_keepdims, edits=("num_classes=3",), reference=ref_class_map),
    Case("output_fixed_64x64", output_fixed_size, refused=("inspect", "a fixed output size")),
    Case("undeclared_output_shape", undeclared_shape("output"), refused=("inspect", "ONNX checker")),
    Case("undeclared_input_shape", undeclared_shape("input"), refused=("inspect", "ONNX checker")),
    Case("square_dim_symbol", square_symbol, reference=ref_nchw_logits),
)


# ---------------------------------------------------------------- the checks

def _data_folder(root: Path, names: tuple[str, ...]) -> Path:
    """Six 60x100 images with block masks; val.txt names three of them."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    rng = np.random.default_rng(0)
    for i in range(6):
        mask = np.zeros((H, W), np.uint8)
        mask[10:40, 20:70] = 1
        if len(names) == 3:
            mask[10:40, 40:45] = 2
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:02d}.png")
    (root / "val.txt").write_text("01\n03\n05\n")
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("third-party-data")
    return {3: _data_folder(root / "three", NAMES3), 2: _data_folder(root / "two", NAMES2)}


def _one_line(code: int, err: str, words: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert words.lower() in err.lower(), err


def _eval_argv(path: Path, card: Path, folder: Path, case: Case, out: Path) -> list[str]:
    names = list(NAMES3 if case.classes == 3 else NAMES2)
    argv = ["eval", "--onnx", str(path), "--card", str(card), "--data", "folder", "--data-root", str(folder),
            "--image-size", f"{H}x{W}", "--batch-size", str(case.batch), "--json", str(out)]
    for edit in (*case.edits, f"class_names={names}"):
        argv += ["--card-set", edit]
    return argv


def _expected_scores(case: Case, path: Path, folder: Path) -> tuple[float, list[float | None]]:
    """Pixel accuracy and per-class IoU of the case's hand computation (onnxruntime on the file, numpy)."""
    data = load_folder(folder, "val", (H, W))
    images, labels = (t.numpy() for t in data.tensors(slice(0, len(data))))
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4
    assert case.reference is not None
    predicted = case.reference(onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]),
                               images)
    assert predicted.shape == labels.shape
    scored = labels != 255
    ious: list[float | None] = []
    for c in range(case.classes):
        union = (((predicted == c) | (labels == c)) & scored).sum()
        ious.append(None if union == 0 else float(((predicted == c) & (labels == c) & scored).sum() / union))
    return float((predicted[scored] == labels[scored]).mean()), ious


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_third_party_file_works_after_inspect_or_stops_in_one_line(case: Case, folders, run_cli,
                                                                      tmp_path: Path) -> None:
    path, card = tmp_path / f"{case.name}.onnx", tmp_path / "card.toml"
    onnx.save_model(case.build(), str(path))
    code, out, err = run_cli(["inspect", str(path), "--card", str(card)])
    if case.refused is not None and case.refused[0] == "inspect":
        _one_line(code, err, case.refused[1])
        assert not card.exists()
        return
    assert code == 0, err
    assert "\x1b" not in out  # a file's own strings (producer, metadata keys) are printed escaped
    # inspect says which fields it cannot tell; the case's edits set exactly those (and the class names)
    edited = {e.partition("=")[0] for e in case.edits} | {"class_names"}
    assert set(load_card(card).unknown) <= edited, load_card(card).unknown
    code, _, err = run_cli(_eval_argv(path, card, folders[case.classes], case, tmp_path / "r.json"))
    if case.refused is not None:
        _one_line(code, err, case.refused[1])
        return
    assert code == 0 and err == "", err
    record = json.loads((tmp_path / "r.json").read_text())["results"][0]
    accuracy, ious = _expected_scores(case, path, folders[case.classes])
    assert record["pixel_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert [v is None for v in record["per_class_iou"]] == [v is None for v in ious]
    np.testing.assert_allclose([v for v in record["per_class_iou"] if v is not None],
                               [v for v in ious if v is not None], atol=1e-9)


def test_external_weights_are_part_of_the_model(folders, run_cli, tmp_path: Path) -> None:
    """Weights in a side file: read with the graph, hashed with it (new weights beside the same .onnx are a new
    model: caches and records key by this hash); a missing or foreign side file is one line."""
    case = Case("external", all_dynamic_nhwc, reference=ref_nhwc_in_nchw_out)
    path, card = tmp_path / "m.onnx", tmp_path / "card.toml"
    onnx.save_model(case.build(), str(path), save_as_external_data=True, location="m.weights", size_threshold=0)
    assert run_cli(["inspect", str(path), "--card", str(card)])[0] == 0
    code, _, err = run_cli(_eval_argv(path, card, folders[3], case, tmp_path / "r.json"))
    assert code == 0, err
    record = json.loads((tmp_path / "r.json").read_text())["results"][0]
    assert record["pixel_accuracy"] == pytest.approx(_expected_scores(case, path, folders[3])[0], abs=1e-9)
    graph_only = hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["target"]["sha256"] == onnx_sha256(path) != graph_only
    weights = tmp_path / "m.weights"
    changed = bytearray(weights.read_bytes())
    changed[-1] ^= 1
    weights.write_bytes(bytes(changed))
    assert onnx_sha256(path) != record["target"]["sha256"] and hashlib.sha256(path.read_bytes()).hexdigest() \
        == graph_only
    weights.unlink()
    code, _, err = run_cli(_eval_argv(path, card, folders[3], case, tmp_path / "r2.json"))
    _one_line(code, err, "m.weights")
    assert not (tmp_path / "r2.json").exists()
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../outside.weights"
    onnx.save_model(model, str(tmp_path / "escape.onnx"))
    _one_line(*run_cli(["inspect", str(tmp_path / "escape.onnx")])[::2], "outside")


def test_an_image_that_makes_the_model_return_nan_is_refused(tmp_path: Path) -> None:
    """nan_on_black works on ordinary images (the case above); an all-black one gives NaN: one line, no score."""
    path = tmp_path / "m.onnx"
    onnx.save_model(nan_on_black(), str(path))
    card = ModelCard(num_classes=3, output=OutputSpec(kind="log_probabilities"))  # not the boundary: the adapter
    with OrtEngine(path, card=ModelCard(num_classes=3)) as engine:
        assert np.isfinite(engine.infer(np.full((1, 3, 32, 32), 0.5, np.float32))).all()
    with OrtEngine(path, card=card) as engine, pytest.raises(HarnessError, match="NaN"):
        engine.infer(np.zeros((2, 3, 32, 32), np.float32))


@pytest.mark.parametrize("fixed, n", [(1, 3), (2, 5), (4, 2), (3, 3)])
def test_a_fixed_batch_is_fed_its_size(fixed: int, n: int, tmp_path: Path) -> None:
    """Batches are split to the graph's fixed batch, the last one padded; each image's scores are its own."""
    path = tmp_path / "m.onnx"
    onnx.save_model(fixed_batch(fixed)(), str(path))
    images = np.random.default_rng(1).random((n, 3, 32, 48), dtype=np.float32)
    with OrtEngine(path, card=ModelCard(num_classes=3), max_batch=4) as engine:
        got = engine.infer(images)
        assert engine.queries == n
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    alone = [session.run(None, {"x": np.repeat(image[None], fixed, axis=0)})[0][0] for image in images]
    np.testing.assert_allclose(got, np.stack(alone), rtol=1e-5, atol=1e-5)


def test_a_fixed_batch_beyond_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save_model(fixed_batch(10_000)(), str(path))
    with pytest.raises(HarnessError, match="batches of exactly 10000"), OrtEngine(path, card=ModelCard(num_classes=3)):
        pass


@pytest.mark.parametrize("shape, full", [((13, 8), (60, 100)), ((28, 3), (60, 100)), ((64, 3), (64, 64)),
                                         ((6, 3), (60, 100)), ((61, 100), (60, 100))])
def test_reduced_scores_must_have_the_images_aspect(shape, full) -> None:
    """A hand-written card cannot make transposed or flattened scores pass as a reduced resolution."""
    adapter = Adapter(ModelCard(num_classes=2, output=OutputSpec(layout="NHW", kind="binary_logits",
                                                                 resolution="reduced")))
    with pytest.raises(HarnessError, match="output.resolution = reduced"):
        adapter.to_logits_numpy(np.zeros((1, *shape), np.float32), full)


@given(h=st.integers(32, 2048), w=st.integers(32, 2048), stride=st.integers(1, 32), ceil=st.booleans())
def test_every_strided_size_fits_as_reduced(h: int, w: int, stride: int, ceil: bool) -> None:
    rounding = np.ceil if ceil else np.floor
    got = (max(1, int(rounding(h / stride))), max(1, int(rounding(w / stride))))
    assert reduced_size_fits(got, (h, w))
    if min(got) > 3 and abs(got[0] / got[1] - h / w) > 0.5 * h / w:
        assert not reduced_size_fits(got[::-1], (h, w))


@given(st.text(max_size=400))
def test_foreign_text_is_printed_escaped_and_bounded(text: str) -> None:
    shown = printable(text, 80)
    assert shown.isprintable() and len(shown) <= 80
    if text.isprintable() and len(text) <= 80:
        assert shown == text


def test_metadata_keys_are_bounded(tmp_path: Path) -> None:
    info = read_graph_info(hostile_metadata())
    shown = metadata_keys(info)
    assert shown.isprintable() and "more)" in shown and len(shown) < 2000
    assert info.producer.isprintable() and len(info.producer) <= 200


HAND_CARDS = [  # (graph, what a user might write instead of inspect's refusal, words of the line)
    (multilabel_sigmoid, ("output.kind=probabilities", "input.mean=none", "input.std=none"), "do not sum to 1"),
    (softmax_over_pixels, ("output.kind=probabilities", "input.mean=none", "input.std=none"), "do not sum to 1"),
    (lambda: flattened_scores(stride=16, k=3), ("output.layout=NHW", "output.kind=binary_logits",
                                                "output.resolution=reduced", "num_classes=2", "input.mean=none",
                                                "input.std=none"), "output.resolution = reduced"),
    (lambda: flattened_scores(stride=1, k=3), ("output.layout=NHW", "output.kind=sigmoid", "num_classes=2",
                                               "input.mean=none", "input.std=none"), "output.resolution = input"),
    (five_d_output, ("input.mean=none", "input.std=none"), "the harness reads (N, K, H, W)"),
]


@pytest.mark.parametrize("build, edits, words", HAND_CARDS)
def test_a_hand_written_card_cannot_turn_a_refusal_into_a_number(build, edits, words, folders, run_cli,
                                                                  tmp_path: Path) -> None:
    """What inspect refuses, a card written by hand does not slip past: eval stops in one line."""
    path = tmp_path / "m.onnx"
    onnx.save_model(build(), str(path))
    classes = 2 if "num_classes=2" in edits else 3
    argv = ["eval", "--onnx", str(path), "--data", "folder", "--data-root", str(folders[classes]), "--image-size",
            f"{H}x{W}", "--json", str(tmp_path / "r.json")]
    for edit in edits:
        argv += ["--card-set", edit]
    code, _, err = run_cli(argv)
    _one_line(code, err, words)
    assert not (tmp_path / "r.json").exists()


def test_a_torch_export_in_training_mode_is_refused(run_cli, tmp_path: Path) -> None:
    """torch.onnx.export(training=TRAINING) keeps BatchNorm on batch statistics: refused, never scored."""
    import warnings

    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 3, 1)).train()
    path = tmp_path / "bn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(2, 3, 32, 32),), str(path), input_names=["input"], output_names=["out"],
                          dynamic_axes={"input": {0: "N", 2: "H", 3: "W"}, "out": {0: "N", 2: "H", 3: "W"}},
                          opset_version=17, dynamo=False, training=torch.onnx.TrainingMode.TRAINING)
    code, _, err = run_cli(["inspect", str(path), "--card", str(tmp_path / "card.toml")])
    _one_line(code, err, "another image shares its batch")
