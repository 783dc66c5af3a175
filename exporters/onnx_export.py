"""torch -> ONNX fp32 with the torch.export-based exporter: dynamic batch, height and width.

Normalisation is the model's first layer, so the graph takes raw [0, 1] pixels like the model.

The exporter builds the graph at torchlib's opset and converts it to the requested one with
onnxscript's version converter (falling back to onnx's). A failed conversion is only logged, and
the graph silently keeps its own opset, so the requested opset is checked twice: against
:func:`supported_opsets` before the export, and against the produced graph after it.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import os
import re
import warnings
from typing import Any

import onnx
import torch

from exporters.onnx_file import INPUT_NAME, OUTPUT_NAME, save_onnx, write_metadata
from harness.errors import HarnessError, error_line
from harness.models.normalize import SegmentationModel

DEFAULT_OPSET = 18
# The exporter converts its opset-18 graph down to 17 reliably; older opsets lack operators the models use.
MIN_OPSET = 17


@functools.cache
def max_opset() -> int:
    """The newest opset the installed exporter produces, read at run time: the smallest of torch.onnx's
    declared maximum, onnxscript's version converter's maximum (the torch.export-based exporter builds
    torchlib's opset and converts) and the newest opset the installed onnx defines. Both maxima are
    private names; a release without one simply drops that limit.
    """
    import onnx.defs

    limits = [onnx.defs.onnx_opset_version()]
    with contextlib.suppress(ImportError, AttributeError):
        from torch.onnx import _constants

        limits.append(int(_constants.ONNX_MAX_OPSET))
    with contextlib.suppress(ImportError, AttributeError):
        from onnxscript.version_converter import _version_converter

        limits.append(int(_version_converter.SUPPORTED_MAX_ONNX_OPSET))
    return max(DEFAULT_OPSET, min(limits))


def supported_opsets() -> range:
    """The opsets ``export_onnx`` accepts here: ``MIN_OPSET..max_opset()`` (for argument checks and help)."""
    return range(MIN_OPSET, max_opset() + 1)


def check_opset(opset: int) -> None:
    """Raise HarnessError (one line) unless the installed exporter can produce ``opset``."""
    supported = supported_opsets()
    if opset not in supported:
        raise HarnessError(f"--opset {opset} is not supported: the installed exporter (torch {torch.__version__}, "
                           f"onnx {onnx.__version__}) writes opsets {supported.start} to {supported.stop - 1}")


def graph_opset(model: onnx.ModelProto) -> int | None:
    """The default-domain (ai.onnx) opset the graph imports, or None when it imports none."""
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return max(versions) if versions else None
# The FCN backbones downsample by 32; smaller inputs have empty feature maps.
MIN_SIDE = 32


def export_onnx(model: SegmentationModel, path: str | os.PathLike, metadata: dict[str, Any],
                opset: int = DEFAULT_OPSET, sample_size: tuple[int, int] = (64, 64)) -> None:
    """Export ``model`` to an fp32 ONNX file at ``path`` (written atomically).

    The graph has input ``images`` float32 (batch, 3, height, width) and output ``logits`` float32
    (batch, K, height, width), all three axes dynamic (height, width >= 32). It passes
    ``onnx.checker`` (full check) and strict shape inference; ``metadata`` is stored as
    ``harness.*`` properties along with ``precision: fp32`` and the opset.
    """
    check_opset(opset)
    # Export a CPU fp32 copy so the caller's model (device, mode) is untouched.
    net = copy.deepcopy(model).to("cpu", torch.float32).eval()
    proto = exported_graph(net, opset, sample_size, str(metadata.get("model", "the model")))
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as e:
        raise HarnessError(f"shape inference failed on the exported graph: {str(e).splitlines()[0]}") from None
    proto.producer_name = "harness"
    write_metadata(proto, {**metadata, "precision": "fp32", "opset": graph_opset(proto),
                           "input": "float32 NCHW RGB", "input_range": [0.0, 1.0]})
    save_onnx(proto, path)


def exported_graph(net: torch.nn.Module, opset: int, sample_size: tuple[int, int], label: str) -> onnx.ModelProto:
    """The exporter's graph of ``net`` at exactly ``opset``; HarnessError (one line) when it fails or when
    the graph came out at another opset (the exporter only logs a failed conversion)."""
    # Batch 2, not 1: a sample batch of 1 would let the tracer specialise the batch axis.
    sample = torch.rand(2, 3, *sample_size)
    dynamic = {"x": {0: torch.export.Dim("batch", min=1),
                     2: torch.export.Dim("height", min=MIN_SIDE),
                     3: torch.export.Dim("width", min=MIN_SIDE)}}
    log = io.StringIO()
    try:
        # The exporter prints progress lines, warnings and (for a failed opset conversion) tracebacks;
        # they are kept for the one-line error below, and the CLI shows its own summary instead.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(log), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(net, (sample,), None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        opset_version=opset, dynamo=True, dynamic_shapes=dynamic,
                                        external_data=False)
    except Exception as e:  # the exporter raises many types; report its first line, not a traceback
        first = error_line(e)
        raise HarnessError(f"torch.onnx.export failed for {label}: {first}") from None
    produced = graph_opset(program.model_proto)
    if produced != opset:
        raise HarnessError(f"the exporter could not convert {label} to opset {opset} (the graph came out at "
                           f"opset {produced}): {_conversion_failure(log.getvalue())}")
    return program.model_proto


def _conversion_failure(log: str) -> str:
    """The line of the exporter's captured log that says why the conversion failed (the exception, if any)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)]
    return (errors or lines or ["no message from the exporter"])[-1 if errors else 0][:300]
