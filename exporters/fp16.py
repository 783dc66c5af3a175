"""fp32 ONNX -> fp16 ONNX whose input and output keep their types (float32 for the DESIGN.md boundary),
and the way back (an fp16 graph's float32 twin, which int8 quantisation starts from).

Weights and activations become float16; a Cast after the input and before the output keep the
interface float32, so every engine and attack feeds the fp16 graph the same [0, 1] float32 pixels.
A user's graph (no harness metadata, checked against its model card) converts the same way and
keeps its own I/O types; one whose input or weights are float16 already is fp16: it is refused
here (its fp16 variant is the file itself, see ``exporters.user_variants``).
"""

from __future__ import annotations

import os
import warnings

import onnx
from onnx import numpy_helper

from exporters.onnx_file import load_onnx, precision_of, read_metadata, save_onnx, write_metadata
from harness.errors import HarnessError, error_line
from harness.fileio import sha256_file
from harness.targets.card import ModelCard
from harness.targets.onnx_io import check_card, read_graph_info

_FLOAT16, _FLOAT = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT


def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike, card: ModelCard | None = None) -> None:
    """Write the fp16 version of the fp32 ONNX file ``src`` to ``dst`` (atomically, checked).

    Uses onnxruntime's float16 converter with ``keep_io_types=True``; the operators the converter
    keeps in float32 by default (Resize scales, Range, ...) stay float32. ``card``: the model card of
    a user's graph (None: a harness export); the file is then checked against the card instead of the
    harness I/O contract. A graph that is fp16 already (float16 input or weights) is refused in one line.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = load_onnx(src, contract=card is None)
    if card is not None:
        check_card(card, read_graph_info(model), str(src))
    precision = read_metadata(model).get("precision", "fp32") if card is None else file_precision(model)
    if precision != "fp32":
        already = " already" if precision == "fp16" else ""
        raise HarnessError(f"{src} is{already} an {precision} graph; fp16 is converted from an fp32 graph")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the converter warns about values clamped to the fp16 range
        try:
            half = convert_float_to_float16(model, keep_io_types=True)
        except Exception as e:  # the converter raises many types on graphs it does not handle; keep one line
            raise HarnessError(f"fp16 conversion of {src} failed: {error_line(e)}") from None
    if not isinstance(half, onnx.ModelProto):
        raise HarnessError(f"fp16 conversion of {src} failed")
    # The converter appends the input Cast at the end of the node list; the checker wants topological order.
    _sort_topologically(half.graph)
    write_metadata(half, {"precision": "fp16", "parent_sha256": sha256_file(src)})
    save_onnx(half, dst)


def file_precision(model: onnx.ModelProto) -> str:
    """The precision of a graph as it stands: int8 (QDQ operators), fp16 (float16 weights or a float16
    image input), else fp32. For a harness export, its recorded ``harness.precision``."""
    guessed = precision_of(model)
    if guessed != "fp32":
        return guessed
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    return "fp16" if any(i.type.tensor_type.elem_type == _FLOAT16 for i in inputs) else "fp32"


def float32_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the fp16 graph ``model`` that computes in float32 and keeps its I/O types.

    Every float16 weight, Constant and Cast-to-float16 becomes float32; a float16 graph input gets a
    Cast to float32 after it and a float16 output a Cast to float16 before it. Quantisation starts
    from this: int8 QDQ needs float32 scales and activations.
    """
    out = onnx.ModelProto.FromString(model.SerializeToString())
    graph = out.graph
    for tensor in graph.initializer:
        if tensor.data_type == _FLOAT16:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype("float32"), tensor.name))
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == _FLOAT16:
                attribute.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attribute.t).astype("float32"),
                                                             attribute.t.name))
            elif node.op_type == "Cast" and attribute.name == "to" and attribute.i == _FLOAT16:
                attribute.i = _FLOAT
            elif attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise HarnessError(f"node {node.name or node.op_type} has a subgraph ({node.op_type}); the fp16 "
                                   "graph cannot be converted to float32 for quantisation")
    initializers = {i.name for i in graph.initializer}
    casts = []
    for value in graph.input:
        if value.name not in initializers and value.type.tensor_type.elem_type == _FLOAT16:
            inside = f"{value.name}__float32"
            for node in graph.node:
                node.input[:] = [inside if name == value.name else name for name in node.input]
            casts.append(onnx.helper.make_node("Cast", [value.name], [inside], to=_FLOAT,
                                               name=f"{value.name}__to_float32"))
    tail = []
    for value in graph.output:
        if value.type.tensor_type.elem_type == _FLOAT16:
            inside = f"{value.name}__float32"
            for node in graph.node:
                node.output[:] = [inside if name == value.name else name for name in node.output]
                node.input[:] = [inside if name == value.name else name for name in node.input]
            tail.append(onnx.helper.make_node("Cast", [inside], [value.name], to=_FLOAT16,
                                              name=f"{value.name}__to_float16"))
    nodes = [*casts, *graph.node, *tail]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # float16 shapes and types inside are stale; shape inference redoes them
    return out


def _sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so that every node comes after the producers of its inputs (stable)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise HarnessError("fp16 conversion produced a graph with a cycle or a missing input")
        for node in ready:
            available.update(node.output)
        ordered += ready
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    copies = [onnx.NodeProto.FromString(n.SerializeToString()) for n in ordered]
    del graph.node[:]
    graph.node.extend(copies)
