"""Reading and checking ONNX files: one-line errors for missing, corrupt, truncated or foreign files.

The harness contract of an ONNX artifact: one input ``images`` float32 (N, 3, H, W) in [0, 1],
one output ``logits`` float32 (N, K, H, W), and ``harness.*`` metadata properties.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import onnx
from google.protobuf.message import DecodeError

from harness.errors import HarnessError, error_line
from harness.fileio import atomic_path

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
META_PREFIX = "harness."
PRECISIONS = ("fp32", "fp16", "int8")

_ONNX_ERRORS = (DecodeError, onnx.checker.ValidationError, onnx.shape_inference.InferenceError,
                OSError, ValueError, RuntimeError)


def load_onnx(path: str | os.PathLike, contract: bool = True) -> onnx.ModelProto:
    """Load ``path``, run the ONNX checker and (``contract``) check the harness I/O contract.

    Raises HarnessError (one line) for a missing, unreadable, corrupt or truncated file, a graph that
    fails the checker, or (``contract``) inputs/outputs that are not one float32 NCHW RGB image tensor
    and one float32 (N, K, H, W) logits tensor. ``contract=False``: a user's file, whose I/O its model
    card describes (harness.targets.onnx_io.check_card checks it instead).
    """
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"ONNX file {path} does not exist")
    try:
        model = onnx.load(str(path))
    except _ONNX_ERRORS as e:
        raise HarnessError(f"{path} is not a readable ONNX model (corrupt or truncated?): {error_line(e)}") from None
    if not model.graph.node:
        raise HarnessError(f"{path} is not a readable ONNX model (corrupt or truncated?): its graph is empty")
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except _ONNX_ERRORS as e:
        raise HarnessError(f"{path} fails the ONNX checker (corrupt or truncated?): {error_line(e)}") from None
    if contract:
        check_io(model, str(path))
    return model


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim]


def check_io(model: onnx.ModelProto, label: str = "ONNX model") -> None:
    """Raise HarnessError unless the graph has one float32 (N, 3, H, W) input and one float32 rank-4 output."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise HarnessError(f"{label} must have one image input and one logits output, has "
                           f"{len(inputs)} inputs and {len(model.graph.output)} outputs")
    x, y = inputs[0], model.graph.output[0]
    for role, v in (("input", x), ("output", y)):
        if v.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type) \
                if v.type.tensor_type.elem_type else "unknown"
            raise HarnessError(f"{label}: {role} {v.name!r} is {dtype}, the harness boundary is float32")
        if len(_dims(v)) != 4:
            raise HarnessError(f"{label}: {role} {v.name!r} has shape {_dims(v)}, expected rank 4 (N, C, H, W)")
    channels = _dims(x)[1]
    if isinstance(channels, int) and channels != 3:
        raise HarnessError(f"{label}: input {x.name!r} has shape {_dims(x)}, expected 3 RGB channels")


def io_names(model: onnx.ModelProto) -> tuple[str, str]:
    initializers = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers][0], model.graph.output[0].name


def input_shape(model: onnx.ModelProto) -> list[int | str]:
    """The input's dims: ints where fixed, names (or "?") where dynamic."""
    initializers = {i.name for i in model.graph.initializer}
    return _dims([i for i in model.graph.input if i.name not in initializers][0])


def read_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    """The ``harness.*`` metadata properties without their prefix; JSON values decoded."""
    out: dict[str, Any] = {}
    for prop in model.metadata_props:
        if prop.key.startswith(META_PREFIX):
            try:
                out[prop.key[len(META_PREFIX):]] = json.loads(prop.value)
            except json.JSONDecodeError:
                out[prop.key[len(META_PREFIX):]] = prop.value
    return out


def write_metadata(model: onnx.ModelProto, metadata: dict[str, Any]) -> None:
    """Set ``harness.<key>`` properties (values JSON-encoded), replacing earlier values of those keys."""
    keep = {p.key: p.value for p in model.metadata_props if not p.key.startswith(META_PREFIX)}
    keep.update({**{META_PREFIX + k: p for k, p in _encoded(read_metadata(model)).items()},
                 **{META_PREFIX + k: p for k, p in _encoded(metadata).items()}})
    del model.metadata_props[:]
    for key, value in keep.items():
        model.metadata_props.add(key=key, value=value)


def _encoded(metadata: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(v) for k, v in metadata.items()}


def precision_of(model: onnx.ModelProto) -> str:
    """The precision recorded in the metadata; for a foreign file, guessed from its operators and weights."""
    recorded = read_metadata(model).get("precision")
    if recorded in PRECISIONS:
        return recorded
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return "int8"
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        return "fp16"
    return "fp32"


def save_onnx(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Check ``model`` and write it to ``path`` atomically (one file, no external data)."""
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except _ONNX_ERRORS as e:
            raise HarnessError(f"the exported graph for {path} fails the ONNX checker: {error_line(e)}") from None
