"""fp32 ONNX -> int8 QDQ ONNX by static post-training quantisation (onnxruntime.quantization).

Calibration runs the fp32 graph on training images (never validation images) and records
activation ranges. The result is in QDQ form with symmetric int8 activations and per-channel
symmetric int8 weights: the form TensorRT's explicit quantisation expects, and one that ONNX
Runtime's CPU provider runs too, so the int8 deployment variant is testable without a GPU.
Input and output keep the graph's own names and types (float32 for a harness export).

A user's graph is calibrated on what it really sees: the boundary images go through the model
card's adapter (``Adapter(card).to_model_numpy``: layout, channel order, scale, mean/std, dtype,
fixed size) and are fed under the graph's input name, whatever it is.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from exporters.onnx_file import io_names, load_onnx, precision_of, read_metadata, save_onnx, write_metadata
from harness.data.base import SegmentationData
from harness.errors import HarnessError, error_line
from harness.fileio import scratch_dir, sha256_file
from harness.targets.adapter import Adapter
from harness.targets.card import ModelCard
from harness.targets.onnx_io import check_card, read_graph_info

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
DEFAULT_CALIBRATION_IMAGES = 64


@dataclass(frozen=True)
class CalibrationSettings:
    """How the int8 graph is calibrated; part of the int8 artifact's cache key."""

    batch_size: int = 16
    method: str = "minmax"  # percentile and entropy measured no better on the harness models
    per_channel: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ImageReader(CalibrationDataReader):
    """onnxruntime's CalibrationDataReader over all images of a data set, a batch at a time, fed under
    ``input_name`` after ``prepare`` (the card's adapter; None: the boundary images as they are)."""

    def __init__(self, data: SegmentationData, batch_size: int, input_name: str,
                 prepare: Adapter | None = None, fixed_batch: int | None = None) -> None:
        self._data = data
        self._batch = fixed_batch or batch_size
        self._fixed = fixed_batch is not None
        self._input = input_name
        self._prepare = prepare
        self._start = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._start >= len(self._data):
            return None
        images = self._data.tensors(slice(self._start, self._start + self._batch))[0].numpy()
        self._start += self._batch
        if self._fixed and len(images) < self._batch:  # a graph of a fixed batch size: pad with copies
            images = np.concatenate([images, images[np.arange(self._batch - len(images)) % len(images)]])
        return {self._input: images if self._prepare is None else self._prepare.to_model_numpy(images)}

    def rewind(self) -> None:
        self._start = 0


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike, calibration: SegmentationData,
                  settings: CalibrationSettings | None = None, card: ModelCard | None = None) -> None:
    """Write the int8 QDQ version of the fp32 ONNX file ``src`` to ``dst`` (atomically, checked).

    ``calibration`` should be training images of the data the model was trained on (all of them are
    used; :data:`DEFAULT_CALIBRATION_IMAGES` is the harness default). ``card``: the model card of a
    user's graph (None: a harness export, whose I/O is the boundary): the images are fed through its
    adapter under ``card.input.name`` (default: the graph's only input), and ``src`` is checked against
    the card instead of the harness I/O contract.
    """
    settings = settings or CalibrationSettings()
    if settings.method not in CALIBRATION_METHODS:
        raise HarnessError(f"unknown calibration method {settings.method!r}; choose from "
                           f"{', '.join(CALIBRATION_METHODS)}")
    model = load_onnx(src, contract=card is None)
    precision = read_metadata(model).get("precision", "fp32") if card is None else precision_of(model)
    if precision != "fp32":
        raise HarnessError(f"{src} is not an fp32 graph (it is {precision}); int8 is quantised from an fp32 graph")
    if card is None:
        input_name, prepare = io_names(model)[0], None
    else:
        check_card(card, read_graph_info(model), str(src))
        input_name = card.input.name or io_names(model)[0]
        prepare = None if card.is_boundary else Adapter(card)
    batch = next((i.shape[0] for i in read_graph_info(model).inputs if i.name == input_name and i.shape), None)
    reader = _ImageReader(calibration, settings.batch_size, input_name, prepare,
                          batch if isinstance(batch, int) and batch > 0 else None)
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[settings.method]
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    quant_logger = logging.getLogger("onnxruntime.quantization")
    level = quant_logger.level
    quant_logger.setLevel(logging.ERROR)  # its per-tensor info lines would drown the CLI output
    try:
        with scratch_dir(dst) as tmp:  # a killed run leaves it; the next write beside dst removes it
            prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "quantized.onnx"
            # Constant folding and shape inference first, as onnxruntime recommends before quantising.
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
            with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print progress
                quantize_static(
                    str(prepared), str(quantized), reader, quant_format=QuantFormat.QDQ,
                    per_channel=settings.per_channel, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=method, extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
                )
            result = onnx.load(str(quantized))
    except HarnessError:
        raise
    except Exception as e:  # onnxruntime raises many types; keep the one-line contract
        first = error_line(e)
        raise HarnessError(f"int8 quantisation of {src} failed: {first}") from None
    finally:
        quant_logger.setLevel(level)
    write_metadata(result, {"precision": "int8", "parent_sha256": sha256_file(src),
                            "calibration": {**settings.as_dict(), "n_images": len(calibration),
                                            "data": calibration.describe(),
                                            **({} if card is None else {"card": card.as_dict()})}})
    save_onnx(result, dst)
