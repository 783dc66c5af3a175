"""One way to get an Engine for a trained model: by engine name, precision and device.

The factory checks that the engine can run here before any export work, then finds (or builds
and caches) the artifact the engine needs: nothing for ``torch``, the ONNX file of the
precision for ``ort``, that ONNX file's TensorRT plan for ``trt``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engines.availability import DEFAULT_DEVICE, ENGINES, PRECISIONS, require
from engines.base import Engine
from engines.ort_engine import OrtEngine
from engines.torch_engine import TorchEngine
from engines.trt_engine import TrtEngine
from exporters.artifacts import Artifact, ModelSource, onnx_artifact
from exporters.onnx_export import DEFAULT_OPSET
from harness.data.base import SegmentationData
from harness.errors import HarnessError
from harness.models.normalize import SegmentationModel

DEFAULT_TRT_MAX_BATCH = 32


def resolve_device(name: str, precision: str, device: str | None) -> str:
    """The device ``name`` runs on (its default when ``device`` is None), after checking the combination
    is valid and usable here; HarnessError (one line, naming what is missing) otherwise."""
    if name not in ENGINES:
        raise HarnessError(f"unknown engine {name!r}; choose from: {', '.join(ENGINES)}")
    if precision not in PRECISIONS[name]:
        raise HarnessError(f"--engine {name} runs {', '.join(PRECISIONS[name])} only; --precision {precision} "
                           "is an exported ONNX variant: use --engine ort or trt")
    device = device or DEFAULT_DEVICE[name]
    require(name, device)
    return device


def artifact_for(name: str, model: SegmentationModel, source: Mapping[str, Any], data: SegmentationData, *,
                 precision: str = "fp32", calibration: SegmentationData | None = None,
                 max_batch: int | None = None, opset: int = DEFAULT_OPSET) -> Artifact | None:
    """The cached artifact engine ``name`` runs (built when missing): None for torch, the ONNX file for
    ort, the TensorRT plan for trt (profile: batch 1..max_batch at ``data``'s image size)."""
    if name == "torch":
        return None
    onnx = onnx_artifact(model, ModelSource.from_loaded(source, data.class_names), precision, opset=opset,
                         calibration=calibration)
    if name == "ort":
        return onnx
    from exporters.tensorrt_plan import PlanSettings, build_plan

    height, width = data.image_size
    limit = max_batch or DEFAULT_TRT_MAX_BATCH
    settings = PlanSettings(precision=precision, height=height, width=width, opt_batch=min(16, limit),
                            max_batch=limit)
    return build_plan(onnx, settings, ModelSource.from_loaded(source, data.class_names).group)


def create_engine(name: str, model: SegmentationModel, source: Mapping[str, Any], data: SegmentationData, *,
                  precision: str = "fp32", device: str | None = None, calibration: SegmentationData | None = None,
                  max_batch: int | None = None, threads: int | None = None) -> Engine:
    """An Engine for ``model`` (not yet entered: use it in a ``with`` block).

    - ``name``: ``torch`` | ``ort`` | ``trt``; ``precision``: ``fp32`` | ``fp16`` | ``int8`` (torch: fp32 only);
    - ``device``: ``cpu`` | ``cuda``, default cpu for torch and ort, cuda for trt;
    - ``source``: the description ``harness.commands.common.load_model`` returns (needs model, size, sha256);
      it keys the artifact cache, so a changed checkpoint never reuses a stale export;
    - ``data``: the images the engine will see: their class names go into the ONNX metadata, their size
      into the TensorRT profile;
    - ``calibration``: training images, required for int8 (calibrates the QDQ graph);
    - ``max_batch``: the largest batch the engine runs at once (larger inputs are split);
    - ``threads``: ONNX Runtime's CPU threads (default ``harness.threads.onnx_runtime_threads()``: the
      suite's ``threads`` or OMP_NUM_THREADS when given, else every usable core).

    Raises HarnessError (one line) when the engine cannot run here or an export fails.
    """
    device = resolve_device(name, precision, device)
    artifact = artifact_for(name, model, source, data, precision=precision, calibration=calibration,
                            max_batch=max_batch)
    if name == "torch":
        return TorchEngine(model, device=device, artifact_sha256=str(source["sha256"]), max_batch=max_batch)
    assert artifact is not None
    if name == "ort":
        return OrtEngine(artifact.path, device=device, max_batch=max_batch, threads=threads)
    return TrtEngine(artifact.path, precision=precision, max_batch=max_batch)
