"""Read a user's ONNX file or TensorRT plan, run one probe input and guess the model card to start from.

For every card field the guess says how it knows: ``sure`` (read from the graph: declared names, types and
shapes, the operators between the input and the first convolution, ``harness.*`` metadata), ``guessed`` (from
conventions or the probe's values; the reason is given) or ``unknown`` (nothing can tell it: a mean/std applied
outside the graph, class names that no metadata gives). Nothing is guessed silently: the written card carries
the reason as a comment on each guessed or unknown line, and the unknown fields are refused at use until edited.

What cannot be adapted at all (several image inputs, 4 channels, a multi-label sigmoid, a tensor of rank 5, a
softmax the probe shows is not over the class axis, scores whose size is no strided reduction of the input's, a
model whose outputs for one image change with the other images of its batch...) is one HarnessError line saying
so. Contradictions between the guessed card and the graph's declared I/O (what eval checks first) are notes.
"""

from __future__ import annotations

import ast
import contextlib
import json
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from exporters.onnx_file import check_io, load_onnx, read_metadata
from harness.errors import HarnessError, error_line
from harness.targets.adapter import SUM_TOLERANCE, Adapter
from harness.targets.card import (
    DTYPES,
    MAX_CLASSES,
    MAX_SIDE,
    NOT_REDUCED,
    CardError,
    InputSpec,
    ModelCard,
    OutputSpec,
    boundary_card,
    card_to_toml,
    preset,
    reduced_size_fits,
)
from harness.targets.onnx_io import (
    FLOAT_DTYPES,
    INTEGER_DTYPES,
    GraphInfo,
    TensorInfo,
    check_card,
    image_input,
    ort_message,
    read_graph_info,
    session_source,
    shown,
    spatial_axes,
)

SURE, GUESSED, UNKNOWN = "sure", "guessed", "unknown"
FIELDS = ("name", "num_classes", "class_names", "input.name", "input.layout", "input.channels", "input.dtype",
          "input.scale", "input.mean", "input.std", "input.size", "input.resize", "output.name", "output.layout",
          "output.kind", "output.resolution")
DEFAULT_PROBE_SIZE = (128, 192)  # non-square, so that the probe tells height from width; divisible by 64
PLAN_SUFFIXES = (".plan", ".engine", ".trt")
MAX_PROBE_BATCH = 16
_MAX_STEPS = 256  # operators followed from the input (or back from the output): graphs are finite, loops bounded
_MAX_CONSTANT = 64  # elements of a per-channel normalisation constant
_CONV_OPS = ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose")
_SHAPE_OPS = ("Shape", "Size")  # read only the input's shape (e.g. to resize the logits back): not on the data path
# Operators that keep the input's channels where they are (a Resize changes only the height and width): the
# normalisation after them is still the input's.
_PASS_OPS = ("Cast", "Identity", "QuantizeLinear", "DequantizeLinear", "Resize", "Upsample")
_NORM_OPS = ("Sub", "Div", "Mul", "Add")
_OUTPUT_PASS_OPS = ("Identity", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Cast", "Resize", "Upsample",
                    "Slice", "QuantizeLinear", "DequantizeLinear")
_METADATA_NAME_KEYS = ("class_names", "names", "labels", "classes")
_MAX_METADATA_TEXT = 1 << 16


@dataclass(frozen=True)
class Verdict:
    """How the guess knows one dotted card field: ``mark`` sure | guessed | unknown, and why."""

    field: str
    mark: str
    why: str


@dataclass(frozen=True)
class OutputStats:
    """One output of the probe: its shape, dtype and value range; for a rank-4 output, ``channel_sums``: axis (1 or
    3) -> the smallest and largest per-pixel sum over that axis (``exp_sums``: of the exponentials, when every
    value is <= 0, as log-probabilities are)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    low: float
    high: float
    finite: bool
    integer_valued: bool
    channel_sums: dict[int, tuple[float, float]] = field(default_factory=dict)
    exp_sums: dict[int, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Probe:
    """One random [0, 1] image fed per the guessed card: the model-side input's shape and dtype, the outputs;
    ``batch_mixed``: the outputs whose values for that image changed when a second image shared its batch."""

    input_shape: tuple[int, ...]
    input_dtype: str
    outputs: tuple[OutputStats, ...]
    batch_mixed: tuple[str, ...] = ()

    def output(self, name: str) -> OutputStats:
        return next(o for o in self.outputs if o.name == name)

    def input_hw(self, layout: str) -> tuple[int, int]:
        """The probe image's (height, width) at the model's input."""
        h, w = (self.input_shape[a] for a in spatial_axes(layout))
        return h, w


@dataclass(frozen=True)
class Inspection:
    """What ``inspect`` found in a file: its declared I/O, the probe (None for a plan), the guessed card, how each
    field is known, and notes (e.g. which of several outputs was taken)."""

    path: Path
    format: str  # "onnx" | "plan"
    info: GraphInfo
    probe: Probe | None
    card: ModelCard
    verdicts: tuple[Verdict, ...]
    notes: tuple[str, ...] = ()

    def verdict(self, dotted: str) -> Verdict:
        return next(v for v in self.verdicts if v.field == dotted)

    def comments(self) -> dict[str, str]:
        """Dotted field -> "guessed: why" / "unknown: why", for the written card."""
        return {v.field: f"{v.mark}: {v.why}" for v in self.verdicts if v.mark != SURE}

    def values(self) -> dict[str, Any]:
        """Dotted field -> the value as the card file writes it (presets and "unknown" as words)."""
        doc = tomllib.loads(card_to_toml(self.card))
        flat: dict[str, Any] = {}
        for key, value in doc.items():
            if isinstance(value, dict):
                flat.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                flat[key] = value
        return {f: flat.get(f) for f in FIELDS}


def inspect_file(path: str | Path, probe_size: tuple[int, int] | None = None) -> Inspection:
    """:func:`inspect_plan` for a ``.plan``/``.engine``/``.trt`` file, else :func:`inspect_onnx`."""
    path = Path(path)
    if path.suffix.lower() in PLAN_SUFFIXES:
        return inspect_plan(path)
    return inspect_onnx(path, probe_size)


def inspect_onnx(path: str | Path, probe_size: tuple[int, int] | None = None) -> Inspection:
    """Read the ONNX file ``path`` (checker, no I/O contract), guess its card from the graph, run one probe at
    ``probe_size`` (H, W) (default: the graph's fixed size, else :data:`DEFAULT_PROBE_SIZE`) and refine the guess
    with the probe's output values. HarnessError (one line) for a file that is not a readable ONNX model, a graph
    the harness cannot adapt, or a probe that ONNX Runtime cannot run."""
    path = Path(path)
    model = load_onnx(path, contract=False)
    info = read_graph_info(model)
    if _harness_exported(model):
        return _inspect_harness_file(path, model, info, probe_size)
    with _statable(path):
        guess = _Guess(path, info, _Graph(model))
        guess.input_fields()
        size = guess.probe_size(probe_size)
        probe = run_probe(model, guess.probe_card(), size, path)
        guess.output_fields(probe)
        inspection = guess.result("onnx", probe)
    try:  # what eval will check first: said now, beside the table, rather than only when the card is used
        check_card(inspection.card, info, str(path))
    except HarnessError as e:
        inspection = replace(inspection, notes=(*inspection.notes, f"the guessed card contradicts the graph's "
                                                f"declared I/O, so eval refuses it until fixed: {e}"))
    return inspection


def inspect_plan(path: str | Path) -> Inspection:
    """Read the TensorRT plan ``path`` (names, shapes, dtypes of its I/O tensors) and guess its card from them; a
    plan hides its operators, so the output kind and the normalisation are guessed or unknown. Needs TensorRT and
    a GPU: without them, one HarnessError line saying what is missing."""
    path = Path(path)
    return guess_from_io(path, read_plan_info(path))


def guess_from_io(path: Path, info: GraphInfo) -> Inspection:
    """The guess from declared I/O alone (a plan's): no operators to follow, no probe."""
    with _statable(path):
        guess = _Guess(path, info, None)
        guess.input_fields()
        guess.output_fields(None)
        return guess.result("plan", None)


@contextlib.contextmanager
def _statable(path: Path) -> Iterator[None]:
    """A guessed field that no card can hold (a tensor name with control characters, say): one line saying so."""
    try:
        yield
    except CardError as e:
        raise HarnessError(f"{path}: the graph's I/O cannot be stated in a model card ({e.field}: {e.detail}): "
                           "not supported") from None


# ---------------------------------------------------------------- harness-exported files: the boundary itself

def _harness_exported(model: onnx.ModelProto) -> bool:
    if not read_metadata(model):
        return False
    try:
        check_io(model)
    except HarnessError:
        return False  # harness.* keys on a graph that is not the boundary: read it as any user's graph
    return True


def _inspect_harness_file(path: Path, model: onnx.ModelProto, info: GraphInfo,
                          probe_size: tuple[int, int] | None) -> Inspection:
    metadata = read_metadata(model)
    names = metadata.get("class_names")
    name = metadata.get("model") if isinstance(metadata.get("model"), str) else path.stem
    try:
        card = boundary_card(names if isinstance(names, list) else None, name=name)
    except CardError:
        card = boundary_card(None, name=path.stem)
    x, y = info.inputs[0], info.outputs[0]
    card = replace(card, input=replace(card.input, name=x.name), output=replace(card.output, name=y.name))
    why = "harness-exported file (harness.* metadata): the boundary"
    probe = run_probe(model, card, probe_size or _default_size(x, "NCHW"), path)
    if card.num_classes is None:
        card = replace(card, num_classes=int(probe.output(y.name).shape[1]))
    verdicts = [Verdict(f, SURE, why) for f in FIELDS]
    if card.class_names is None:
        card = replace(card, unknown=("class_names",))
        verdicts[FIELDS.index("class_names")] = Verdict("class_names", UNKNOWN, "not in the file's metadata")
    return Inspection(path, "onnx", info, probe, card, tuple(verdicts))


def _default_size(x: TensorInfo, layout: str) -> tuple[int, int]:
    hw = [x.shape[a] for a in spatial_axes(layout)]
    return (hw[0], hw[1]) if all(isinstance(d, int) for d in hw) else DEFAULT_PROBE_SIZE  # type: ignore[return-value]


# ---------------------------------------------------------------- the graph, read structurally

@dataclass
class _InputTrace:
    """What lies between the input and the first convolution."""

    layout: str | None = None  # NCHW / NHWC when the input reaches a Conv through layout-preserving operators
    reached: str = ""  # the operator the walk stopped at (a Conv when it got there)
    norm: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (Sub|Div|Mul|Add, constant)
    gathers: list[list[int]] = field(default_factory=list)  # constant index lists (channel permutations)
    casts: bool = False


class _Graph:
    """Lookups over one ONNX graph: constants, producers and consumers of each tensor."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        self.initializers = {i.name: i for i in model.graph.initializer}
        self.constant_nodes = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant" and n.output}
        self.producer = {out: n for n in model.graph.node for out in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in model.graph.node:
            for name in set(n.input):
                self.consumers.setdefault(name, []).append(n)

    def constant(self, name: str) -> np.ndarray | None:
        """The value of a small constant tensor (initializer or Constant node), None otherwise."""
        proto: onnx.TensorProto | None = None
        if name in self.initializers:
            proto = self.initializers[name]
        elif name in self.constant_nodes:
            attrs = {a.name: a for a in self.constant_nodes[name].attribute}
            if "value" in attrs:
                proto = attrs["value"].t
        if proto is None or int(np.prod(proto.dims, dtype=np.int64)) > _MAX_CONSTANT:
            return None
        try:
            return numpy_helper.to_array(proto)
        except (ValueError, TypeError, RuntimeError):  # external data, odd types: not a normalisation constant
            return None

    def trace_input(self, name: str) -> _InputTrace:
        """Follow the input through casts, transposes, constant elementwise ops and constant gathers to the first
        convolution (bounded walk; stops at anything else)."""
        trace = _InputTrace()
        order = [0, 1, 2, 3]  # input axis held by each axis of the current tensor
        tensor = name
        for _ in range(_MAX_STEPS):
            users = [n for n in self.consumers.get(tensor, []) if n.op_type not in _SHAPE_OPS]
            if not users:
                trace.reached = "nothing (the input is not used)" if tensor == name else "a graph output"
                return trace
            if users and all(n.op_type in _CONV_OPS for n in users):  # e.g. a main and an auxiliary head
                users = users[:1]
            if len(users) > 1:
                trace.reached = f"{len(users)} operators ({', '.join(sorted({n.op_type for n in users}))})"
                return trace
            node = users[0]
            trace.reached = node.op_type
            if node.op_type in _CONV_OPS:
                trace.layout = {(0, 1, 2, 3): "NCHW", (0, 3, 1, 2): "NHWC"}.get(tuple(order))
                return trace
            nxt = self._step(node, tensor, order, trace)
            if nxt is None:
                return trace
            tensor = nxt
        trace.reached = "a chain too long to follow"
        return trace

    def _step(self, node: onnx.NodeProto, tensor: str, order: list[int], trace: _InputTrace) -> str | None:
        """The tensor after ``node`` when it keeps the input recognisable (updating ``order``), else None."""
        if not node.output:
            return None
        op = node.op_type
        if op in _PASS_OPS:
            trace.casts = trace.casts or op == "Cast"
            return node.output[0] if node.input and node.input[0] == tensor else None
        if op == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [3, 2, 1, 0])
            if sorted(perm) != [0, 1, 2, 3]:
                return None
            order[:] = [order[p] for p in perm]
            return node.output[0]
        if op in _NORM_OPS and len(node.input) == 2:
            other = node.input[1] if node.input[0] == tensor else node.input[0]
            value = self.constant(other)
            if value is None or other == tensor:
                return None
            if op in ("Sub", "Div") and node.input[1] != other:  # c - x, c / x: not a normalisation
                return None
            trace.norm.append((op, value.astype(np.float64)))
            return node.output[0]
        if op == "Gather" and len(node.input) == 2 and node.input[0] == tensor:
            indices = self.constant(node.input[1])
            if indices is None or indices.ndim != 1:
                return None
            trace.gathers.append([int(i) for i in indices])
            return node.output[0]
        return None

    def last_operator(self, output: str) -> onnx.NodeProto | None:
        """The operator that computes ``output``'s values, looking through reshapes, transposes, resizes, casts."""
        tensor = output
        for _ in range(_MAX_STEPS):
            node = self.producer.get(tensor)
            if node is None or node.op_type not in _OUTPUT_PASS_OPS or not node.input:
                return node
            tensor = node.input[0]
        return None


# ---------------------------------------------------------------- the guess

class _Guess:
    """Fills the card field by field, recording how each is known."""

    def __init__(self, path: Path, info: GraphInfo, graph: _Graph | None) -> None:
        self.path = path
        self.label = str(path)
        self.info = info
        self.graph = graph
        self.values: dict[str, Any] = {"name": _plain_stem(path)}
        self.verdicts: dict[str, Verdict] = {"name": Verdict("name", SURE, "the file's name; edit to rename")}
        self.unknown: list[str] = []
        self.notes: list[str] = []
        self.x: TensorInfo | None = None

    def set(self, dotted: str, value: Any, mark: str, why: str) -> None:
        self.values[dotted] = value
        self.verdicts[dotted] = Verdict(dotted, mark, why)
        if mark == UNKNOWN:
            self.unknown.append(dotted)

    # ---- input

    def input_fields(self) -> None:
        x = image_input(self.info, None, self.label)
        self.x = x
        self.set("input.name", x.name, SURE, "the graph's only input")
        if x.dtype not in DTYPES:
            raise HarnessError(f"{self.label}: input {x.name!r} is {x.dtype}; the harness feeds float32, float16 or "
                               "uint8 images: not supported")
        self.set("input.dtype", x.dtype, SURE, "declared by the graph")
        if len(x.shape) != 4:
            raise HarnessError(f"{self.label}: input {x.name!r} has shape {shown(x.shape)}; the harness feeds images "
                               "of rank 4 (NCHW or NHWC): not supported")
        trace = self.graph.trace_input(x.name) if self.graph is not None else None
        layout = self._layout(x, trace)
        self._channels(x, layout, trace)
        self._normalisation(x, trace)
        self._size(x, layout)
        self.set("input.resize", "bilinear", SURE, "the only policy (used for a fixed size)")

    def _layout(self, x: TensorInfo, trace: _InputTrace | None) -> str:
        if trace is not None and trace.layout is not None:
            via = "through a Transpose(0, 3, 1, 2)" if trace.layout == "NHWC" else "without a transpose"
            self.set("input.layout", trace.layout, SURE, f"the input reaches the first Conv {via}")
            return trace.layout
        c1, c3 = x.shape[1] in (1, 3), x.shape[3] in (1, 3)
        seen = "a plan hides its operators" if trace is None else f"the walk to the first Conv stopped at " \
                                                                   f"{trace.reached}"
        if c1 != c3:
            layout = "NCHW" if c1 else "NHWC"
            axis = 1 if c1 else 3
            self.set("input.layout", layout, GUESSED, f"shape {shown(x.shape)}: axis {axis} holds the channels "
                                                      f"({seen})")
            return layout
        self.set("input.layout", "NCHW", GUESSED, f"ambiguous: shape {shown(x.shape)} does not tell NCHW from NHWC "
                                                  f"({seen}); check")
        return "NCHW"

    def _channels(self, x: TensorInfo, layout: str, trace: _InputTrace | None) -> None:
        n = x.shape[3 if layout == "NHWC" else 1]
        sure_layout = self.verdicts["input.layout"].mark == SURE
        if n == 1:
            self.set("input.channels", "grey", SURE if sure_layout else GUESSED, "one input channel")
            return
        if isinstance(n, int) and n != 3:
            raise HarnessError(f"{self.label}: input {x.name!r} has shape {shown(x.shape)}: {n} channels; the harness "
                               "feeds 3 (rgb, bgr) or 1 (grey): not supported")
        flips = [g for g in (trace.gathers if trace else []) if g == [2, 1, 0]]
        why = "rgb and bgr look the same from outside the graph; set bgr if the model was trained on BGR images"
        if flips:
            why = "the graph reverses its input channels (Gather [2, 1, 0]): it may expect bgr; check"
        elif isinstance(n, str):
            why = f"the channel axis is dynamic ({n}); 3 channels assumed, " + why
        self.set("input.channels", "rgb", GUESSED, why)

    def _normalisation(self, x: TensorInfo, trace: _InputTrace | None) -> None:
        if x.dtype == "uint8":
            self.set("input.scale", 255.0, SURE, "uint8 input: pixels in [0, 255]")
            for key in ("input.mean", "input.std"):
                self.set(key, None, SURE, "uint8 input: the 8-bit image itself (any normalisation is inside)")
            return
        if trace is not None and trace.norm:
            ops = ", ".join(op for op, _ in trace.norm)
            for key in ("input.mean", "input.std"):
                self.set(key, None, SURE, f"normalised inside the graph ({ops} by constants before the first Conv)")
            large = _in_255_units(trace.norm)
            self.set("input.scale", 255.0 if large else 1.0, GUESSED,
                     f"the graph's normalisation constants are in {'[0, 255]' if large else '[0, 1]'} units")
            return
        where = "a plan hides its operators" if trace is None else \
            f"no constant Sub/Div/Mul/Add between the input and {trace.reached}"
        for key in ("input.mean", "input.std"):
            self.set(key, None, UNKNOWN, f"{where}: the model's mean/std is applied outside the graph (e.g. "
                                         "imagenet); set it")
        self.set("input.scale", 1.0, GUESSED, "float input without normalisation inside: [0, 1] pixels assumed")

    def _size(self, x: TensorInfo, layout: str) -> None:
        hw = [x.shape[a] for a in spatial_axes(layout)]
        fixed = [d for d in hw if isinstance(d, int)]
        if len(fixed) == 2:
            if max(fixed) > MAX_SIDE:
                raise HarnessError(f"{self.label}: input {x.name!r} has shape {shown(x.shape)}; the harness supports "
                                   f"at most {MAX_SIDE} pixels a side")
            self.set("input.size", (hw[0], hw[1]), SURE, "fixed by the graph")
        elif fixed:
            raise HarnessError(f"{self.label}: input {x.name!r} has shape {shown(x.shape)}: one fixed side; the "
                               "harness resizes to a fixed size or not at all: not supported (export the model "
                               "with both sides fixed or both dynamic)")
        else:
            self.set("input.size", None, SURE, f"dynamic axes ({hw[0]}, {hw[1]})")

    def probe_size(self, requested: tuple[int, int] | None) -> tuple[int, int]:
        size = self.values["input.size"]
        if size is not None:
            if requested is not None and tuple(requested) != tuple(size):
                self.notes.append(f"--probe-size ignored: the graph takes {size[0]}x{size[1]} only")
            return size
        return requested or DEFAULT_PROBE_SIZE

    def probe_card(self) -> ModelCard:
        """The guessed input as a card for the probe (an unknown mean/std probed as imagenet's)."""
        v = self.values
        mean, std = v["input.mean"], v["input.std"]
        channels, scale = v["input.channels"], v["input.scale"]
        if "input.mean" in self.unknown:
            mean, std = preset("mean", channels, scale), preset("std", channels, scale)
        spec = InputSpec(name=v["input.name"], layout=v["input.layout"], channels=channels, dtype=v["input.dtype"],
                         scale=scale, mean=mean, std=std, size=v["input.size"])
        return ModelCard(input=spec)

    # ---- output

    def output_fields(self, probe: Probe | None) -> None:
        y = self._pick_output()
        if probe is not None and y.name in probe.batch_mixed:
            raise HarnessError(f"{self.label}: output {y.name!r} for one image changes when another image shares its "
                               "batch (batch statistics, e.g. BatchNorm exported in training mode): every score would "
                               "depend on the batch; not supported: export the model in eval mode")
        layout, channels = self._output_layout(y, probe)
        kind = self._kind(y, probe, layout, channels)
        self._resolution(y, probe, layout)
        self._classes(y, probe, kind, layout, channels)

    def _pick_output(self) -> TensorInfo:
        outputs = self.info.outputs
        if len(outputs) == 1:
            self.set("output.name", outputs[0].name, SURE, "the graph's only output")
            return outputs[0]
        names = ", ".join(o.name for o in outputs)
        chosen = next((o for o in outputs if o.name == "out"), None) or next(
            (o for o in outputs if len(o.shape) == 4), outputs[0])
        rule = '"out" (torchvision\'s name for the logits)' if chosen.name == "out" else "the first of rank 4"
        self.set("output.name", chosen.name, GUESSED, f"{len(outputs)} outputs ({names}): took {rule}; check")
        self.notes.append(f"several outputs ({names}): took {chosen.name!r}")
        return chosen

    def _output_layout(self, y: TensorInfo, probe: Probe | None) -> tuple[str, int | None]:
        """The output layout and its channel count (None: not known)."""
        shape: Sequence[int | str] = probe.output(y.name).shape if probe is not None else y.shape
        if y.dtype not in FLOAT_DTYPES + INTEGER_DTYPES:
            raise HarnessError(f"{self.label}: output {y.name!r} is {y.dtype}; the harness reads float scores or "
                               "an integer class map: not supported")
        if len(shape) == 3:
            if probe is not None:
                in_hw, out_hw = probe.input_hw(self.values["input.layout"]), (int(shape[1]), int(shape[2]))
                if out_hw != in_hw and not reduced_size_fits(out_hw, in_hw):
                    raise HarnessError(f"{self.label}: output {y.name!r} has shape {shown(shape)} for a {in_hw[0]}x"
                                       f"{in_hw[1]} probe: rank 3, but not an (N, H, W) class map of the image (an "
                                       "(N, H*W, K) sequence of per-pixel scores?); the harness reads (N, K, H, W) or "
                                       "(N, H, W, K) scores or an (N, H, W) class map: not supported")
            self.set("output.layout", "NHW", SURE, f"rank 3 ({shown(y.shape)}): a class map without channel axis")
            return "NHW", 1
        if len(shape) != 4:
            raise HarnessError(f"{self.label}: output {y.name!r} has shape {shown(shape)}; the harness reads (N, K, H, "
                               "W) or (N, H, W, K) scores or an (N, H, W) class map: not supported")
        assert self.x is not None
        x_hw = [self.x.shape[a] for a in spatial_axes(self.values["input.layout"])]
        declared = {lay: len(y.shape) == 4 and _same_dims([y.shape[a] for a in spatial_axes(lay)], x_hw)
                    for lay in ("NCHW", "NHWC")}
        if declared["NCHW"] != declared["NHWC"]:
            layout = "NCHW" if declared["NCHW"] else "NHWC"
            self.set("output.layout", layout, SURE, f"declared {shown(y.shape)}: the input's height and width on "
                                                    f"axes {spatial_axes(layout)}")
        elif probe is not None:
            fits = {lay: _spatial_fit(shape, lay, probe.input_hw(self.values["input.layout"]))
                    for lay in ("NCHW", "NHWC")}
            layout = "NHWC" if fits["NHWC"] and not fits["NCHW"] else "NCHW"
            why = f"the probe's output {shown(shape)} has the input's aspect on axes {spatial_axes(layout)}"
            if fits["NCHW"] == fits["NHWC"]:
                why = f"ambiguous: the probe's output {shown(shape)} does not tell NCHW from NHWC; check"
            self.set("output.layout", layout, GUESSED, why)
        else:
            c1, c3 = isinstance(y.shape[1], int), isinstance(y.shape[3], int)
            layout = "NHWC" if c3 and not c1 else "NCHW"
            self.set("output.layout", layout, GUESSED, f"declared {shown(y.shape)}: the fixed axis holds the classes"
                     if c1 != c3 else f"ambiguous: declared {shown(y.shape)}; check")
        n = shape[3 if layout == "NHWC" else 1]
        return layout, n if isinstance(n, int) else None

    def _kind(self, y: TensorInfo, probe: Probe | None, layout: str, channels: int | None) -> str:
        node = self.graph.last_operator(y.name) if self.graph is not None else None
        op = node.op_type if node is not None else None
        stats = probe.output(y.name) if probe is not None else None
        if stats is not None and not stats.finite:
            self.notes.append(f"the probe's output {y.name!r} holds NaN or infinity: check the input card")
        kind, mark, why = _kind_of(y, op, stats, channels, layout, self.label)
        if kind == "sigmoid" and channels not in (None, 1):
            raise HarnessError(f"{self.label}: output {y.name!r} ends in Sigmoid over {channels} channels (multi-label "
                               "scores); the harness reads one sigmoid channel or per-pixel class scores: not "
                               "supported")
        self.set("output.kind", kind, mark, why)
        return kind

    def _resolution(self, y: TensorInfo, probe: Probe | None, layout: str) -> None:
        assert self.x is not None
        in_layout = self.values["input.layout"]
        x_hw = [self.x.shape[a] for a in spatial_axes(in_layout)]
        out_axes = (1, 2) if layout in ("NHWC", "NHW") else (2, 3)
        rank = 3 if layout == "NHW" else 4
        if len(y.shape) == rank and _same_dims([y.shape[a] for a in out_axes], x_hw):
            self.set("output.resolution", "input", SURE, "the output is declared with the input's height and width")
            return
        if probe is None:
            self.set("output.resolution", "input", GUESSED, "a plan hides its operators and no probe ran; check")
            return
        out_hw = [probe.output(y.name).shape[a] for a in out_axes]
        in_hw = list(probe.input_hw(in_layout))
        seen = f"the probe's {in_hw[0]}x{in_hw[1]} input gave a {out_hw[0]}x{out_hw[1]} output"
        if out_hw == in_hw:
            self.set("output.resolution", "input", GUESSED, seen)
        elif reduced_size_fits(out_hw, in_hw):
            self.set("output.resolution", "reduced", GUESSED, seen + " (upsampled bilinearly to the labels)")
        elif all(o <= i for o, i in zip(out_hw, in_hw, strict=True)):
            raise HarnessError(f"{self.label}: {seen}: {NOT_REDUCED}; the harness reads scores at the input's "
                               "resolution or a reduced one: not supported")
        else:
            raise HarnessError(f"{self.label}: {seen}, larger than the input; the harness reads scores at the input's "
                               "resolution or below: not supported")

    def _classes(self, y: TensorInfo, probe: Probe | None, kind: str, layout: str, channels: int | None) -> None:
        names, key = _metadata_class_names(self.info.metadata)
        if kind in ("sigmoid", "binary_logits"):
            self.set("num_classes", 2, GUESSED, f"output.kind = {kind}: background and foreground")
        elif kind == "class_map":
            if names is not None:
                self.set("num_classes", len(names), GUESSED, f"the class names in metadata {key!r}")
            else:
                top = f" (the probe's largest class is {probe.output(y.name).high:g})" if probe is not None else ""
                self.set("num_classes", None, UNKNOWN, f"a class map does not say how many classes there are{top}; "
                                                       "set it")
        elif channels is None:
            self.set("num_classes", None, UNKNOWN, "the output's class axis is dynamic and no probe ran; set it")
        else:
            if channels > MAX_CLASSES:
                raise HarnessError(f"{self.label}: output {y.name!r} has {channels} channels; the harness reads at "
                                   f"most {MAX_CLASSES} classes: not supported")
            axis = 3 if layout == "NHWC" else 1
            declared = len(y.shape) == 4 and y.shape[axis] == channels
            self.set("num_classes", channels, SURE if declared and self.verdicts["output.layout"].mark == SURE
                     else GUESSED, f"{channels} channels on axis {axis} of the output")
        count = self.values["num_classes"]
        if names is not None and (count is None or len(names) == count):
            self.set("class_names", tuple(names), GUESSED, f"from the file's metadata {key!r}")
        else:
            why = "not in the file's metadata" if names is None else \
                f"the metadata {key!r} names {len(names)} classes, the output has {count}"
            self.set("class_names", None, UNKNOWN, why + ": list the model's classes in its output order (checked "
                     "against the data's)")

    def result(self, fmt: str, probe: Probe | None) -> Inspection:
        v = self.values
        spec_in = InputSpec(name=v["input.name"], layout=v["input.layout"], channels=v["input.channels"],
                            dtype=v["input.dtype"], scale=v["input.scale"], mean=v["input.mean"], std=v["input.std"],
                            size=v["input.size"], resize=v["input.resize"])
        spec_out = OutputSpec(name=v["output.name"], layout=v["output.layout"], kind=v["output.kind"],
                              resolution=v["output.resolution"])
        card = ModelCard(name=v["name"], input=spec_in, output=spec_out, num_classes=v["num_classes"],
                         class_names=v["class_names"], unknown=tuple(self.unknown))
        return Inspection(self.path, fmt, self.info, probe, card, tuple(self.verdicts[f] for f in FIELDS),
                          tuple(self.notes))


def _plain_stem(path: Path) -> str | None:
    stem = path.stem.strip()[:100].strip()
    return stem if stem and stem.isprintable() else None


def _same_dims(a: Sequence[int | str], b: Sequence[int | str]) -> bool:
    """Whether two dim lists are declared equal: the same ints or the same dim names (an unnamed "?" says nothing)."""
    return list(a) == list(b) and "?" not in a


def _in_255_units(norm: Sequence[tuple[str, np.ndarray]]) -> bool:
    """Whether normalisation constants are for [0, 255] pixels: a mean or std above 2, or a factor below 1/50."""
    for op, value in norm:
        magnitude = np.abs(value)
        if op in ("Sub", "Add", "Div") and magnitude.size and float(magnitude.max()) > 2:
            return True
        if op == "Mul" and magnitude.size and 0 < float(magnitude.min()) < 0.02:
            return True
    return False


def _spatial_fit(shape: Sequence[int | str], layout: str, in_hw: tuple[int, int]) -> bool:
    """Whether ``shape``'s spatial axes in ``layout`` hold the input's size or a reduction with its aspect."""
    h, w = (shape[a] for a in spatial_axes(layout))
    return isinstance(h, int) and isinstance(w, int) and 1 <= h <= in_hw[0] and h * in_hw[1] == w * in_hw[0]


def _kind_of(y: TensorInfo, op: str | None, stats: OutputStats | None, channels: int | None,
             layout: str, label: str) -> tuple[str, str, str]:
    """(kind, mark, why) from the output's dtype, its last operator and the probe's values; HarnessError for a
    softmax the probe shows is not over the class axis."""
    if y.dtype in INTEGER_DTYPES:
        return "class_map", SURE, f"the output is {y.dtype}: class ids"
    ends = f"the last operator is {op}" if op else "a plan hides its operators"
    tol = 1e-2 if y.dtype == "float16" else 1e-3
    axis = 3 if layout == "NHWC" else 1
    sums = stats.channel_sums.get(axis) if stats is not None else None
    exp_sums = stats.exp_sums.get(axis) if stats is not None else None
    sums_to_one = sums is not None and abs(sums[0] - 1) <= tol and abs(sums[1] - 1) <= tol
    exp_sums_to_one = exp_sums is not None and abs(exp_sums[0] - 1) <= tol and abs(exp_sums[1] - 1) <= tol
    no_channel_axis = layout == "NHW"
    in_unit = stats is not None and stats.low >= -1e-6 and stats.high <= 1 + 1e-6
    seen = f"; the probe's values span [{stats.low:.3g}, {stats.high:.3g}]" if stats is not None else \
        "; no probe ran: check"
    if no_channel_axis or op == "ArgMax" or (stats is not None and stats.integer_valued and channels == 1):
        return "class_map", GUESSED, f"{ends}{seen}, integer-valued"
    if channels == 1 or op == "Sigmoid":
        if op == "Sigmoid" or (in_unit and op is None):
            return "sigmoid", GUESSED, f"{ends}, one channel{seen}"
        return "binary_logits", GUESSED, f"{ends}, one channel without Sigmoid{seen}"
    if op in ("Softmax", "LogSoftmax") and stats is not None:
        got = sums if op == "Softmax" else exp_sums
        if got is None or not (abs(got[0] - 1) <= SUM_TOLERANCE and abs(got[1] - 1) <= SUM_TOLERANCE):
            span = "" if got is None else f" (per-pixel sums in [{got[0]:.4g}, {got[1]:.4g}])"
            raise HarnessError(f"{label}: output {y.name!r} ends in a {op} that does not sum to 1 over the class axis "
                               f"(axis {axis}){span}: a softmax over other axes (before opset 13, Softmax normalises "
                               "everything from its axis on, e.g. C*H*W): not supported; re-export with "
                               f"{op}(axis={axis}) at opset 13 or later, or without it (logits)")
    if op == "Softmax" or sums_to_one:
        return "probabilities", GUESSED, f"{ends}" + ("; the probe's scores sum to 1 over the classes"
                                                      if sums_to_one else "; check its axis")
    if op == "LogSoftmax" or exp_sums_to_one:
        return "log_probabilities", GUESSED, f"{ends}" + ("; the probe's exp(scores) sum to 1 over the classes"
                                                          if exp_sums_to_one else "; check its axis")
    if stats is None:
        return "logits", GUESSED, f"{ends}{seen}"
    return "logits", GUESSED, f"{ends}{seen}, not summing to 1 over the classes"


def _metadata_class_names(metadata: dict[str, str]) -> tuple[list[str] | None, str]:
    """Class names from a producer's metadata (``class_names``/``names``/``labels``/``classes``: a JSON or Python
    list, or a {id: name} dict as YOLO exports write it), and the key; (None, "") when there are none."""
    for key, text in metadata.items():
        if key.lower().removeprefix("harness.") not in _METADATA_NAME_KEYS or len(text) > _MAX_METADATA_TEXT:
            continue
        value: Any = None
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                continue
        if isinstance(value, dict):
            try:
                value = [value[k] for k in sorted(value, key=int)]
            except (ValueError, TypeError):
                continue
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            try:
                ModelCard(class_names=tuple(value))
            except CardError:
                continue
            return value, key
    return None, ""


# ---------------------------------------------------------------- the probe

def probe_input(card: ModelCard, batch: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A random [0, 1] image batch of ``size`` (the model's side) fed the card's way (the adapter's conversion:
    channels, scale, mean/std, layout, dtype)."""
    pixels = np.random.default_rng(seed).random((batch, 3, *size), dtype=np.float32)
    return np.ascontiguousarray(Adapter(card).to_model_numpy(pixels))


def run_probe(model: onnx.ModelProto, card: ModelCard, size: tuple[int, int], path: Path) -> Probe:
    """Run one random image (batch 1, or the graph's fixed batch) through ONNX Runtime's CPU provider; the
    statistics of every output. HarnessError (one line) when ONNX Runtime cannot load or run the graph."""
    import onnxruntime

    from harness.threads import onnx_runtime_threads

    info = read_graph_info(model)
    x = image_input(info, card.input.name, str(path))
    batch = x.shape[0] if x.shape and isinstance(x.shape[0], int) else 1
    if batch > MAX_PROBE_BATCH:
        raise HarnessError(f"{path}: input {x.name!r} has a fixed batch of {batch}; the probe feeds at most "
                           f"{MAX_PROBE_BATCH} images")
    if not all(1 <= s <= MAX_SIDE for s in size):
        raise HarnessError(f"{path}: probe size {size[0]}x{size[1]} is outside 1..{MAX_SIDE} pixels a side")
    feed = probe_input(card, batch, size)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # a failure is reported once, as the one line below, not also in ORT's log
    options.intra_op_num_threads = onnx_runtime_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = onnxruntime.InferenceSession(session_source(model, path), options,
                                               providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types (or RuntimeError) for a graph it rejects
        raise HarnessError(f"ONNX Runtime cannot load {path}: {ort_message(error_line(e))}") from None
    run_options = onnxruntime.RunOptions()
    run_options.log_severity_level = 4
    try:
        results = session.run(None, {x.name: feed}, run_options)
    except MemoryError:
        raise HarnessError(f"out of memory running the {shown(feed.shape)} probe on {path}; try a smaller "
                           "--probe-size") from None
    except Exception as e:  # a size, dtype or operator the graph rejects: its message says which
        raise HarnessError(f"ONNX Runtime failed on the {shown(feed.shape)} {feed.dtype} probe of {path} (give a "
                           f"size the model takes: --probe-size HxW): {ort_message(error_line(e))}") from None
    stats = tuple(_stats(o.name, np.asarray(r)) for o, r in zip(session.get_outputs(), results, strict=True))
    mixed = () if x.shape and isinstance(x.shape[0], int) else \
        _batch_mixed(session, x.name, card, size, results, [o.name for o in session.get_outputs()], run_options)
    return Probe(tuple(int(d) for d in feed.shape), str(feed.dtype), stats, mixed)


def _batch_mixed(session: Any, name: str, card: ModelCard, size: tuple[int, int], alone: list[Any],
                 names: list[str], run_options: Any) -> tuple[str, ...]:
    """The outputs whose values for the probe image change once a second image shares its batch: the model mixes
    the images of a batch (batch statistics), so each score would depend on the batch size and on the neighbours
    the engine happens to group (a silent wrong number)."""
    feed = probe_input(card, 2, size)  # the same generator: image 0 is the probe image itself
    try:
        together = session.run(None, {name: feed}, run_options)
    except Exception:  # a graph that runs only batches of one (a reshape to 1): the engine feeds it one at a time
        return ()
    found = []
    for output, a, b in zip(names, alone, together, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype.kind not in "fiub" or a.ndim == 0 or b.ndim == 0 or b.shape[0] != 2 or a.shape[1:] != b.shape[1:]:
            continue  # not per-image outputs: the engine's shape checks say so
        first, alone_values = b[:1].astype(np.float64), a.astype(np.float64)
        if a.dtype.kind != "f":  # class ids: a near tie may flip between batch kernels, a mixing model flips many
            mixed = float(np.mean(first != alone_values)) > 1e-3
        else:
            scale = 1.0 + float(np.abs(np.nan_to_num(alone_values, posinf=0.0, neginf=0.0)).max())
            with np.errstate(invalid="ignore"):
                diff = np.abs(np.nan_to_num(first - alone_values, posinf=0.0, neginf=0.0))
            mixed = not bool((np.isnan(first) == np.isnan(alone_values)).all()) or float(diff.max()) > 1e-3 * scale
        if mixed:
            found.append(output)
    return tuple(found)


def _stats(name: str, value: np.ndarray) -> OutputStats:
    dtype = str(value.dtype)
    numeric = value.dtype.kind in "fiub" and value.size > 0
    if not numeric:
        return OutputStats(name, tuple(value.shape), dtype, 0.0, 0.0, value.size > 0, False)
    v = value.astype(np.float64)
    finite = bool(np.isfinite(v).all())
    clean = v[np.isfinite(v)] if not finite else v
    low, high = (float(clean.min()), float(clean.max())) if clean.size else (0.0, 0.0)
    integer_valued = finite and bool(np.all(v == np.rint(v)))
    sums: dict[int, tuple[float, float]] = {}
    exp_sums: dict[int, tuple[float, float]] = {}
    if v.ndim == 4 and finite:
        for axis in (1, 3):
            s = v.sum(axis=axis)
            sums[axis] = (float(s.min()), float(s.max()))
            if high <= 1e-6:
                e = np.exp(v).sum(axis=axis)
                exp_sums[axis] = (float(e.min()), float(e.max()))
    return OutputStats(name, tuple(int(d) for d in value.shape), dtype, low, high, finite, integer_valued, sums,
                       exp_sums)


# ---------------------------------------------------------------- TensorRT plans

def read_plan_info(path: Path) -> GraphInfo:
    """The I/O tensors of a TensorRT plan (names, dtypes, shapes: -1 dims as "?"). Needs TensorRT and a GPU."""
    from engines.availability import tensorrt_missing

    if not path.is_file():
        raise HarnessError(f"TensorRT plan {path} does not exist" + (" (it is a directory)" if path.is_dir() else ""))
    missing = tensorrt_missing()
    if missing is not None:
        raise HarnessError(f"reading a TensorRT plan needs the gpu extra (pip install -e '.[gpu]') and an NVIDIA "
                           f"GPU: {missing} (python -m harness engines shows what is usable)")
    import tensorrt as trt

    from engines.tensorrt_env import recording_logger, start_failure
    from engines.trt_engine import plan_load_failure

    try:
        data = path.read_bytes()
    except OSError as e:
        raise HarnessError(f"cannot read TensorRT plan {path}: {e.strerror or e}") from None
    logger = recording_logger(trt)  # must outlive the runtime
    try:
        runtime = trt.Runtime(logger)
    except TypeError as e:  # pybind11: "factory function returned nullptr" when CUDA cannot start
        raise start_failure(e, "trt.Runtime", trt.__version__, logger.record) from None
    try:
        engine = runtime.deserialize_cuda_engine(data)
    except Exception as e:  # some releases raise on a foreign plan instead of returning None
        raise HarnessError(plan_load_failure(path, trt.__version__, error_line(e))) from None
    if engine is None:
        raise HarnessError(plan_load_failure(path, trt.__version__, logger.record.first()))
    inputs, outputs = [], []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dims = tuple(int(d) if int(d) > 0 else "?" for d in engine.get_tensor_shape(name))
        try:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
        except (TypeError, KeyError):
            dtype = str(engine.get_tensor_dtype(name)).removeprefix("DataType.").lower()
        tensor = TensorInfo(name, dtype, dims)
        (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(tensor)
    return GraphInfo(tuple(inputs), tuple(outputs), 0, f"TensorRT {trt.__version__}", {})


def iter_rows(inspection: Inspection) -> Iterator[tuple[str, Any, str, str]]:
    """(field, value as written in the card, mark, why) for each card field, in card order."""
    values = inspection.values()
    for v in inspection.verdicts:
        yield v.field, values[v.field], v.mark, v.why
