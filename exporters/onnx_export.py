"""torch -> ONNX fp32 with the torch.export-based exporter: dynamic batch, height and width.

Normalisation is the model's first layer, so the graph takes raw [0, 1] pixels like the model.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings
from typing import Any

import onnx
import torch

from exporters.onnx_file import INPUT_NAME, OUTPUT_NAME, save_onnx, write_metadata
from harness.errors import HarnessError
from harness.models.normalize import SegmentationModel

DEFAULT_OPSET = 18
MIN_OPSET = 17
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
    if opset < MIN_OPSET:
        raise HarnessError(f"--opset {opset} is too old: the harness exports opset {MIN_OPSET} or later")
    # Export a CPU fp32 copy so the caller's model (device, mode) is untouched.
    net = copy.deepcopy(model).to("cpu", torch.float32).eval()
    # Batch 2, not 1: a sample batch of 1 would let the tracer specialise the batch axis.
    sample = torch.rand(2, 3, *sample_size)
    dynamic = {"x": {0: torch.export.Dim("batch", min=1),
                     2: torch.export.Dim("height", min=MIN_SIDE),
                     3: torch.export.Dim("width", min=MIN_SIDE)}}
    try:
        # The exporter prints progress lines and warnings; the CLI shows its own summary instead.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(net, (sample,), None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        opset_version=opset, dynamo=True, dynamic_shapes=dynamic,
                                        external_data=False)
    except Exception as e:  # the exporter raises many types; report its first line, not a traceback
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise HarnessError(f"torch.onnx.export failed for {metadata.get('model', 'the model')}: {first}") from None
    proto = program.model_proto
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as e:
        raise HarnessError(f"shape inference failed on the exported graph: {str(e).splitlines()[0]}") from None
    proto.producer_name = "harness"
    write_metadata(proto, {**metadata, "precision": "fp32", "opset": opset,
                           "input": "float32 NCHW RGB", "input_range": [0.0, 1.0]})
    save_onnx(proto, path)
