"""ONNX artifacts of a trained model, by precision, built on demand and cached by content hash.

fp32 is keyed by the checkpoint's sha256 (plus opset and torch version); fp16 and int8 are keyed
by the sha256 of the fp32 ONNX file they are made from (plus the calibration settings and data
for int8). A changed checkpoint therefore changes every key below it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime
import torch

from exporters.cache import cached_artifact
from exporters.fp16 import convert_fp16
from exporters.int8 import CalibrationSettings, quantize_int8
from exporters.onnx_export import DEFAULT_OPSET, export_onnx
from exporters.onnx_file import PRECISIONS
from harness import __version__
from harness.data.base import SegmentationData
from harness.errors import HarnessError
from harness.models.normalize import SegmentationModel


@dataclass(frozen=True)
class ModelSource:
    """What an export is made from: registry name, size, checkpoint sha256 and class names."""

    name: str
    size: str
    sha256: str
    class_names: tuple[str, ...]

    @classmethod
    def from_loaded(cls, source: Mapping[str, Any], class_names: Sequence[str]) -> ModelSource:
        """From the description ``harness.commands.common.load_model`` returns and the data's class names."""
        return cls(str(source["model"]), str(source["size"]), str(source["sha256"]), tuple(class_names))

    @property
    def group(self) -> str:
        return f"{self.name}--{self.size}"


@dataclass(frozen=True)
class Artifact:
    """A file in the cache: its path, sha256, whether it was reused rather than built, its precision."""

    path: Path
    sha256: str
    reused: bool
    precision: str


def onnx_artifact(model: SegmentationModel, source: ModelSource, precision: str = "fp32", *,
                  opset: int = DEFAULT_OPSET, calibration: SegmentationData | None = None,
                  calibration_settings: CalibrationSettings | None = None) -> Artifact:
    """The cached ONNX file of ``model`` at ``precision``, exporting/converting what is missing.

    ``calibration`` (training images) is required for int8; ``calibration_settings`` default to
    :class:`CalibrationSettings`'s defaults.
    """
    if precision not in PRECISIONS:
        raise HarnessError(f"unknown precision {precision!r}; choose from: {', '.join(PRECISIONS)}")
    fp32 = _fp32(model, source, opset)
    if precision == "fp32":
        return fp32
    if precision == "fp16":
        fields = {"kind": "onnx-fp16", "parent_sha256": fp32.sha256, "onnxruntime": onnxruntime.__version__,
                  "harness": __version__}
        return Artifact(*cached_artifact(source.group, "fp16", fields, "model.fp16.onnx",
                                         lambda p: convert_fp16(fp32.path, p)), precision="fp16")
    if calibration is None:
        raise HarnessError("int8 export needs calibration images (the training split of the model's data)")
    calibration_settings = calibration_settings or CalibrationSettings()
    fields = {"kind": "onnx-int8", "parent_sha256": fp32.sha256, "calibration": calibration_settings.as_dict(),
              "calibration_data": calibration.describe(), "calibration_images": len(calibration),
              "onnxruntime": onnxruntime.__version__,
              "harness": __version__}
    return Artifact(*cached_artifact(source.group, "int8", fields, "model.int8.onnx",
                                     lambda p: quantize_int8(fp32.path, p, calibration, calibration_settings)),
                    precision="int8")


def _fp32(model: SegmentationModel, source: ModelSource, opset: int) -> Artifact:
    fields = {"kind": "onnx-fp32", "source_sha256": source.sha256, "model": source.name, "size": source.size,
              "class_names": list(source.class_names), "opset": opset, "torch": torch.__version__,
              "harness": __version__}
    metadata = {"model": source.name, "size": source.size, "class_names": list(source.class_names),
                "source_sha256": source.sha256, "harness_version": __version__}
    return Artifact(*cached_artifact(source.group, "fp32", fields, "model.fp32.onnx",
                                     lambda p: export_onnx(model, p, metadata, opset)), precision="fp32")
