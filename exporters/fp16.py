"""fp32 ONNX -> fp16 ONNX whose input and output stay float32 (the DESIGN.md boundary).

Weights and activations become float16; a Cast after the input and before the output keep the
interface float32, so every engine and attack feeds the fp16 graph the same [0, 1] float32 pixels.
"""

from __future__ import annotations

import os
import warnings

import onnx

from exporters.onnx_file import load_onnx, read_metadata, save_onnx, write_metadata
from harness.errors import HarnessError
from harness.fileio import sha256_file


def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Write the fp16 version of the fp32 ONNX file ``src`` to ``dst`` (atomically, checked).

    Uses onnxruntime's float16 converter with ``keep_io_types=True``; the operators the converter
    keeps in float32 by default (Resize scales, Range, ...) stay float32.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = load_onnx(src)
    if read_metadata(model).get("precision", "fp32") != "fp32":
        raise HarnessError(f"{src} is not an fp32 graph; fp16 is converted from the fp32 export")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the converter warns about values clamped to the fp16 range
        half = convert_float_to_float16(model, keep_io_types=True)
    if not isinstance(half, onnx.ModelProto):
        raise HarnessError(f"fp16 conversion of {src} failed")
    # The converter appends the input Cast at the end of the node list; the checker wants topological order.
    _sort_topologically(half.graph)
    write_metadata(half, {"precision": "fp16", "parent_sha256": sha256_file(src)})
    save_onnx(half, dst)


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
