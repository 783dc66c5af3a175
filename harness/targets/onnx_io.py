"""What an ONNX graph declares about its I/O, and whether a model card agrees with it.

:func:`read_graph_info` reads names, element types, shapes (fixed dims as ints, dynamic ones by name, ``"?"``
when unnamed), opset, producer and metadata; initializers are weights, not inputs. :func:`check_card` compares a
card with that: every contradiction is one HarnessError line that names the card field to edit, found before any
engine is built (a card that silently disagrees with its graph is a silent wrong number).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from harness.errors import HarnessError, error_line
from harness.fileio import sha256_file
from harness.targets.card import (
    MAX_CLASSES,
    MAX_SIDE,
    NOT_REDUCED,
    ONE_CHANNEL_KINDS,
    InputSpec,
    ModelCard,
    reduced_size_fits,
)

FLOAT_DTYPES = ("float32", "float16", "float64")
INTEGER_DTYPES = ("int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64", "bool")  # class ids
MAX_SHOWN = 200  # characters of a producer, metadata key or other foreign text in a table or message
MAX_SHOWN_KEYS = 20
_MAX_SUBGRAPH_DEPTH = 64  # If/Loop bodies nest; a graph is finite, the walk is bounded anyway


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: ``dtype`` a numpy name ("float32", "uint8", "int64"; "undefined" or the type's
    kind, e.g. "sequence", for what is not a typed tensor); ``shape`` fixed dims as ints, dynamic dims by name
    (``"?"`` when unnamed); ``()`` when the graph declares no shape."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class GraphInfo:
    """The I/O of a graph (inputs without the initializers), its default-domain opset (0: none declared),
    producer ("name version") and every metadata property."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    opset: int
    producer: str
    metadata: dict[str, str] = field(default_factory=dict)


def read_graph_info(model: onnx.ModelProto) -> GraphInfo:
    """The declared I/O of ``model``: inputs that are not initializers, outputs, opset, producer, metadata."""
    initializers = {i.name for i in model.graph.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    producer = printable(f"{model.producer_name} {model.producer_version}".strip())
    return GraphInfo(inputs=tuple(tensor_info(v) for v in model.graph.input if v.name not in initializers),
                     outputs=tuple(tensor_info(v) for v in model.graph.output), opset=int(opset), producer=producer,
                     metadata={p.key: p.value for p in model.metadata_props})


def printable(text: str, limit: int = MAX_SHOWN) -> str:
    """Foreign ``text`` (a producer, a metadata key) safe to print: control and other non-printable characters
    escaped (``\\x1b``, ``\\n``), at most ``limit`` characters (`` ...`` marks a cut)."""
    out = "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                  for c in text[:limit + 1])
    return out if len(out) <= limit else out[:limit - 4] + " ..."


def ort_message(text: str, limit: int = 240) -> str:
    """An ONNX Runtime error message without its source-location preamble, at most ``limit`` characters."""
    text = text.split("Status Message: ")[-1]
    return text if len(text) <= limit else text[:limit - 4] + " ..."


def metadata_keys(info: GraphInfo, limit: int = MAX_SHOWN_KEYS) -> str:
    """The graph's metadata keys for a table: sorted, printable, at most ``limit`` of them ("none": no key)."""
    keys = sorted(info.metadata)
    shown_keys = ", ".join(printable(k, 60) for k in keys[:limit])
    return (shown_keys + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")) or "none"


def external_data_files(path: str | Path) -> tuple[str, ...]:
    """The side files (locations relative to the ONNX file's folder) holding the weights of ``path``: none for a
    file that holds its own. The file must be readable ONNX (``exporters.onnx_file.load_onnx`` checked it)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError) as e:  # replaced or truncated since it was checked
        raise HarnessError(f"{path} is not a readable ONNX model (changed since it was checked?): "
                           f"{error_line(e)}") from None
    locations = set()
    for tensor in _all_tensors(model.graph, 0):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations.update(e.value for e in tensor.external_data if e.key == "location")
    return tuple(sorted(locations))


def session_source(model: onnx.ModelProto, path: str | Path,
                   locations: Sequence[str] | None = None) -> bytes | str:
    """What ONNX Runtime loads: the checked model's bytes (what was checked is what runs), or, for weights in side
    files (``locations``: :func:`external_data_files`, read when None), the file's path (ORT reads them beside it;
    such models may exceed protobuf's 2 GiB message limit)."""
    locations = external_data_files(path) if locations is None else locations
    return str(path) if locations else model.SerializeToString()


def onnx_sha256(path: str | Path, locations: Sequence[str] | None = None) -> str:
    """What identifies the model in ``path``: its file's sha256, or, when its weights lie in side files (external
    data; ``locations``: :func:`external_data_files`, read when None), the sha256 of that hash and of each side
    file's name and hash, so that new weights beside an unchanged graph file are a new model (caches and records
    key a user's artifact by this, never by the .onnx alone)."""
    path = Path(path)
    try:
        digest = sha256_file(path)
        locations = external_data_files(path) if locations is None else locations
        if not locations:
            return digest
        combined = hashlib.sha256(digest.encode())
        for location in locations:
            combined.update(b"\0" + location.encode("utf-8", "surrogateescape") + b"\0")
            combined.update(sha256_file(path.parent / location).encode())
    except OSError as e:
        raise HarnessError(f"cannot read {path} or its external data: {e.strerror or e}") from None
    return combined.hexdigest()


def _all_tensors(graph: onnx.GraphProto, depth: int) -> Iterator[onnx.TensorProto]:
    """Every tensor a graph stores: initializers, sparse initializers, Constant values, subgraphs' (bounded)."""
    if depth > _MAX_SUBGRAPH_DEPTH:
        raise HarnessError(f"the graph nests subgraphs more than {_MAX_SUBGRAPH_DEPTH} deep: not supported")
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _all_tensors(sub, depth + 1)


def tensor_info(value: onnx.ValueInfoProto) -> TensorInfo:
    """One ValueInfoProto as a TensorInfo (a dim that is not a positive int counts as dynamic)."""
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return TensorInfo(value.name, (kind or "undefined").removesuffix("_type"), ())
    tensor = value.type.tensor_type
    dims: list[int | str] = []
    if tensor.HasField("shape"):
        for d in tensor.shape.dim:
            dims.append(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?"))
    return TensorInfo(value.name, onnx_dtype_name(tensor.elem_type), tuple(dims))


def onnx_dtype_name(elem_type: int) -> str:
    """The numpy name of an ONNX element type ("float32", "int64", ...); ONNX's own name where numpy has none."""
    if elem_type == onnx.TensorProto.UNDEFINED:
        return "undefined"
    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type).name)
    except (KeyError, ValueError, TypeError):
        try:
            return onnx.TensorProto.DataType.Name(elem_type).lower()
        except ValueError:
            return f"type {elem_type}"


def shown(shape: Sequence[int | str]) -> str:
    """A shape for a message: ``[N, 3, H, W]``; ``[] (not declared)`` for an empty one."""
    return f"[{', '.join(str(d) for d in shape)}]" if shape else "[] (not declared)"


def image_input(info: GraphInfo, name: str | None, label: str) -> TensorInfo:
    """The graph input the card's ``input.name`` (None: the only input) names; HarnessError otherwise."""
    names = ", ".join(repr(i.name) for i in info.inputs) or "none"
    if not info.inputs:
        raise HarnessError(f"{label}: the graph has no input to feed (each of its inputs has a default value in the "
                           "file): not supported")
    if name is not None:
        found = [i for i in info.inputs if i.name == name]
        if not found:
            raise HarnessError(f"{label}: input.name is {name!r}, not an input of the graph (its inputs: {names}); "
                               "edit input.name in the card")
    if len(info.inputs) != 1:
        raise HarnessError(f"{label}: the graph has {len(info.inputs)} inputs ({names}); the harness feeds one image "
                           "input and cannot fill the others")
    return info.inputs[0]


def chosen_output(info: GraphInfo, name: str | None, label: str) -> TensorInfo:
    """The graph output the card's ``output.name`` (None: the only output) names; HarnessError otherwise."""
    names = ", ".join(repr(o.name) for o in info.outputs) or "none"
    if name is not None:
        for out in info.outputs:
            if out.name == name:
                return out
        raise HarnessError(f"{label}: output.name is {name!r}, not an output of the graph (its outputs: {names}); "
                           "edit output.name in the card")
    if len(info.outputs) != 1:
        raise HarnessError(f"{label}: the graph has {len(info.outputs)} outputs ({names}); say which holds the "
                           "scores: set output.name in the card")
    return info.outputs[0]


def check_card(card: ModelCard, info: GraphInfo, label: str) -> None:
    """Raise HarnessError (one line, naming the card field to edit) where ``card`` contradicts the graph's
    declared I/O: input/output names, several outputs without output.name, dtypes, ranks, channel counts,
    layouts, a fixed graph size against input.size, a fixed output size against output.resolution.
    Dynamic dims are not contradictions: what they hold is checked on the real tensors (the adapter)."""
    x = image_input(info, card.input.name, label)
    y = chosen_output(info, card.output.name, label)
    _check_input(card.input, x, label)
    _check_output(card, x, y, label)


def spatial_axes(layout: str) -> tuple[int, int]:
    """The (height, width) axes of a rank-4 tensor in ``layout`` (NCHW or NHWC)."""
    return (1, 2) if layout == "NHWC" else (2, 3)


def _check_input(spec: InputSpec, x: TensorInfo, label: str) -> None:
    where = f"{label}: input {x.name!r}"
    if x.dtype != spec.dtype:
        supported = x.dtype in ("float32", "float16", "uint8")
        fix = f'set input.dtype = "{x.dtype}"' if supported else "the harness feeds float32, float16 or uint8"
        if x.dtype == "uint8":
            fix += ' (with input.scale = 255, input.mean = input.std = "none")'
        raise HarnessError(f"{where} is {x.dtype}, the card says input.dtype = {spec.dtype!r}; {fix}")
    if len(x.shape) != 4:
        raise HarnessError(f"{where} has shape {shown(x.shape)}; the harness feeds images of rank 4 (NCHW or NHWC)")
    channel_axis, other_axis = (3, 1) if spec.layout == "NHWC" else (1, 3)
    other_layout = "NCHW" if spec.layout == "NHWC" else "NHWC"
    expected = 1 if spec.channels == "grey" else 3
    channels, other = x.shape[channel_axis], x.shape[other_axis]
    wrong_layout = (f"{where} has shape {shown(x.shape)}, the card says input.layout = {spec.layout!r}; "
                    f'set input.layout = "{other_layout}"')
    if isinstance(channels, int) and channels != expected:
        if other in (1, 3):
            raise HarnessError(wrong_layout)
        if channels in (1, 3):
            fix = 'set input.channels = "grey"' if channels == 1 else 'set input.channels = "rgb" (or "bgr")'
            raise HarnessError(f"{where} has {channels} channel{'s' if channels > 1 else ''} (shape "
                               f"{shown(x.shape)}), the card says input.channels = {spec.channels!r}; {fix}")
        raise HarnessError(f"{where} has shape {shown(x.shape)}: {channels} channels on axis {channel_axis}; the "
                           "harness feeds 3 (rgb, bgr) or 1 (grey)")
    if isinstance(channels, str) and other == expected:  # a dynamic "channel" axis beside a fixed 3: NHWC as NCHW
        raise HarnessError(wrong_layout)
    _check_size(spec, x, where)


def _check_size(spec: InputSpec, x: TensorInfo, where: str) -> None:
    hw = [x.shape[a] for a in spatial_axes(spec.layout)]
    fixed = [d for d in hw if isinstance(d, int)]
    if any(d > MAX_SIDE for d in fixed):
        raise HarnessError(f"{where} has shape {shown(x.shape)}; the harness supports at most {MAX_SIDE} pixels "
                           "a side")
    if not fixed:
        return
    size = "x".join(str(d) for d in hw)
    if spec.size is None:
        if len(fixed) < 2:
            raise HarnessError(f"{where} has shape {shown(x.shape)}: one fixed side ({size}); the harness resizes to "
                               "a fixed size or not at all: set input.size = [H, W] to the size the model takes")
        raise HarnessError(f"{where} takes {size} images only (shape {shown(x.shape)}), the card says input.size = "
                           f'"dynamic"; set input.size = [{hw[0]}, {hw[1]}]')
    if any(isinstance(d, int) and d != s for d, s in zip(hw, spec.size, strict=True)):
        raise HarnessError(f"{where} takes {size} images (shape {shown(x.shape)}), the card says input.size = "
                           f"[{spec.size[0]}, {spec.size[1]}]; edit input.size")


def _check_output(card: ModelCard, x: TensorInfo, y: TensorInfo, label: str) -> None:
    spec = card.output
    where = f"{label}: output {y.name!r}"
    if y.dtype not in FLOAT_DTYPES + INTEGER_DTYPES:
        raise HarnessError(f"{where} is {y.dtype}; the harness reads float scores or an integer class map")
    if y.dtype in INTEGER_DTYPES and spec.kind != "class_map":
        raise HarnessError(f"{where} is {y.dtype} (integers are classes, not scores), the card says output.kind = "
                           f'{spec.kind!r}; set output.kind = "class_map"')
    rank = 3 if spec.layout == "NHW" else 4
    if len(y.shape) != rank:
        if len(y.shape) == 3 and spec.kind == "class_map":
            fix = 'set output.layout = "NHW"'
        elif len(y.shape) == 4 and spec.layout == "NHW":
            fix = 'set output.layout = "NCHW" (or "NHWC")'
        else:
            fix = "the harness reads (N, K, H, W), (N, H, W, K) scores or an (N, H, W) class map"
        raise HarnessError(f"{where} has shape {shown(y.shape)}, the card says output.layout = {spec.layout!r}; {fix}")
    if rank == 4:
        _check_output_channels(card, y, where)
    _check_resolution(card, x, y, where)


def _check_output_channels(card: ModelCard, y: TensorInfo, where: str) -> None:
    spec = card.output
    channel_axis, other_axis = (3, 1) if spec.layout == "NHWC" else (1, 3)
    other_layout = "NCHW" if spec.layout == "NHWC" else "NHWC"
    channels, other = y.shape[channel_axis], y.shape[other_axis]
    expected = 1 if spec.kind in ONE_CHANNEL_KINDS else card.num_classes
    if isinstance(channels, int) and channels > MAX_CLASSES:
        raise HarnessError(f"{where} has shape {shown(y.shape)}: {channels} channels on axis {channel_axis} (output."
                           f"layout = {spec.layout!r}); the harness reads at most {MAX_CLASSES} classes: not supported "
                           "(if the graph declares a wrong shape, fix its output's shape in the file)")
    if isinstance(channels, str):
        if isinstance(other, int) and (expected is None or other == expected):
            raise HarnessError(f"{where} has shape {shown(y.shape)} (dynamic axis {channel_axis}, {other} on axis "
                               f"{other_axis}), the card says output.layout = {spec.layout!r}; set output.layout = "
                               f'"{other_layout}"')
        return
    if channels == 1 and spec.kind not in ONE_CHANNEL_KINDS:
        raise HarnessError(f"{where} has one channel (shape {shown(y.shape)}), the card says output.kind = "
                           f'{spec.kind!r}; set output.kind = "sigmoid" (a probability) or "binary_logits"')
    if expected is None or channels == expected:
        return
    if other == expected:
        raise HarnessError(f"{where} has shape {shown(y.shape)}, the card says output.layout = {spec.layout!r}; "
                           f'set output.layout = "{other_layout}"')
    if expected == 1:
        raise HarnessError(f"{where} has {channels} channels (shape {shown(y.shape)}), the card says output.kind = "
                           f"{spec.kind!r}, which has one channel; edit output.kind")
    raise HarnessError(f"{where} has {channels} channels (shape {shown(y.shape)}), the card says num_classes = "
                       f"{card.num_classes}; edit num_classes")


def _check_resolution(card: ModelCard, x: TensorInfo, y: TensorInfo, where: str) -> None:
    """Fixed input and output sizes that contradict output.resolution (dynamic sizes are checked at run time)."""
    x_hw = [x.shape[a] for a in spatial_axes(card.input.layout)]
    y_hw = [y.shape[a] for a in ((1, 2) if card.output.layout in ("NHWC", "NHW") else (2, 3))]
    if not all(isinstance(d, int) for d in (*x_hw, *y_hw)):
        return
    x_size, y_size = "x".join(map(str, x_hw)), "x".join(map(str, y_hw))
    if card.output.resolution == "input" and x_hw != y_hw:
        fix = 'set output.resolution = "reduced"' if all(o < i for o, i in zip(y_hw, x_hw, strict=True)) else \
            "the harness reads scores at the input's resolution or below"
        raise HarnessError(f"{where} is {y_size} for a {x_size} input, the card says output.resolution = "
                           f'"input"; {fix}')
    if card.output.resolution == "reduced" and not reduced_size_fits(y_hw, x_hw):  # type: ignore[arg-type]
        larger = not all(o <= i for o, i in zip(y_hw, x_hw, strict=True))
        raise HarnessError(f"{where} is {y_size} for a {x_size} input, " + (
            "larger than the input; the harness reads scores at the input's resolution or below" if larger else
            f"{NOT_REDUCED}; check output.layout"))
