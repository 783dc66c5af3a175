"""Deployment variants of a user's ONNX file: fp16, int8 QDQ and TensorRT plans, keyed by the file's sha256.

A user's file (an ``--onnx`` target) is the reference: its variants keep its I/O (names, types,
layout: the same model card describes them), and live under ``<cache>/artifacts/user--<sha[:16]>/``,
keyed by the file's sha256 plus everything else they depend on (the settings, the calibration data
and card for int8, the onnxruntime version), so an edited file never meets a stale variant.

The file is the variant of its own precision (:func:`exporters.fp16.file_precision`): an fp32 file
is its fp32 variant; a file that is fp16 already (float16 weights or input) is its fp16 variant and
has no fp32 one; its int8 variant is quantised from its float32 twin (``float32_graph``), since QDQ
needs float32 scales. A QDQ file is int8 already and has no other variants.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnxruntime

from exporters.artifacts import Artifact
from exporters.cache import cached_artifact
from exporters.fp16 import convert_fp16, file_precision, float32_graph
from exporters.int8 import CalibrationSettings, quantize_int8
from exporters.onnx_file import PRECISIONS, input_shape, load_onnx, save_onnx
from exporters.tensorrt_plan import PlanSettings, build_plan
from harness import __version__
from harness.data.base import SegmentationData
from harness.errors import HarnessError
from harness.fileio import scratch_dir
from harness.targets.target import Target


def user_group(target: Target) -> str:
    """The cache folder of ``target``'s variants: ``user--<sha256[:16]>``."""
    return f"user--{target.sha256[:16]}"


def own_precision(target: Target) -> str:
    """The precision of the user's file as it stands (fp32, fp16 or int8)."""
    _require_onnx(target)
    assert target.path is not None
    return _file_precision(str(target.path), target.sha256)


@functools.lru_cache(maxsize=32)
def _file_precision(path: str, sha256: str) -> str:
    # Keyed by the content hash too: a command asks this several times (the default --precision, then the variant
    # check), and each uncached answer loads and fully checks a file that may be hundreds of MB.
    return file_precision(load_onnx(path, contract=False))


def check_variants(target: Target, precisions: Sequence[str]) -> str:
    """The precision of ``target``'s file, after checking every one of ``precisions`` can be made from it
    (HarnessError, one line, for the first that cannot: fp32 of an fp16 file, anything but int8 of a QDQ file)."""
    for precision in precisions:
        if precision not in PRECISIONS:
            raise HarnessError(f"unknown precision {precision!r}; choose from: {', '.join(PRECISIONS)}")
    own = own_precision(target)
    for precision in precisions:
        if precision == own:
            continue
        if own == "int8":
            raise HarnessError(f"{target.path} is an int8 (QDQ) graph already: it is its own int8 variant, and no "
                               f"{precision} variant is made from it; give the fp32 file it was quantised from")
        if precision == "fp32":
            raise HarnessError(f"{target.path} is an fp16 graph already (float16 weights or input): it is its own "
                               "fp16 variant and has no fp32 one; ask for fp16 (the file itself) or int8")
    return own


def user_onnx_variant(target: Target, precision: str, calibration: SegmentationData | None, *,
                      calibration_settings: CalibrationSettings | None = None) -> Artifact:
    """The ONNX file of the ``--onnx`` target ``target`` at ``precision``, made and cached when missing.

    The file's own precision: the file itself (``reused=True``; ``path == target.path``). fp16 of an fp32
    file: onnxruntime's converter with ``keep_io_types``. int8: static QDQ quantisation calibrated on
    ``calibration`` (required; training images) fed through ``Adapter(card).to_model_numpy`` under the
    card's input name. HarnessError (one line) for what cannot be made: fp32 of an fp16 file, anything
    but int8 of a QDQ file, int8 without calibration images.
    """
    own = check_variants(target, [precision])
    assert target.path is not None
    if precision == own:
        return Artifact(target.path, target.sha256, True, own)
    base: dict[str, Any] = {"parent_sha256": target.sha256, "parent_precision": own,
                            "onnxruntime": onnxruntime.__version__, "harness": __version__}
    group = user_group(target)
    if precision == "fp16":
        fields = {**base, "kind": "user-onnx-fp16"}
        path, sha, reused = cached_artifact(group, "fp16", fields, "model.fp16.onnx",
                                            lambda p: convert_fp16(target.path, p, target.card))
        return Artifact(path, sha, reused, "fp16")
    if calibration is None:
        raise HarnessError("int8 export needs calibration images (the training split of the model's data)")
    settings = calibration_settings or CalibrationSettings()
    fields = {**base, "kind": "user-onnx-int8", "card": target.card.as_dict(), "calibration": settings.as_dict(),
              "calibration_data": calibration.describe(), "calibration_images": len(calibration)}
    path, sha, reused = cached_artifact(group, "int8", fields, "model.int8.onnx",
                                        lambda p: _quantize(target, own, p, calibration, settings))
    return Artifact(path, sha, reused, "int8")


def _quantize(target: Target, own: str, dst: Path, calibration: SegmentationData,
              settings: CalibrationSettings) -> None:
    assert target.path is not None
    if own == "fp32":
        quantize_int8(target.path, dst, calibration, settings, target.card)
        return
    with scratch_dir(dst.with_name("model.float32.onnx")) as tmp:
        twin = Path(tmp) / "model.float32.onnx"
        save_onnx(float32_graph(load_onnx(target.path, contract=False)), twin)
        quantize_int8(twin, dst, calibration, settings, target.card)


def user_plan(target: Target, precision: str, calibration: SegmentationData | None,
              settings: PlanSettings) -> Artifact:
    """The TensorRT plan built from ``target``'s ONNX variant of ``precision`` (see :func:`user_onnx_variant`).

    ``settings.height`` x ``settings.width`` is the boundary image size: the profile gets the model-side
    shape (the card's layout, channels and fixed size); a graph with a fixed batch gets that batch only.
    """
    from dataclasses import replace

    from harness.targets.adapter import Adapter

    onnx_file = user_onnx_variant(target, precision, calibration)
    height, width = Adapter(target.card).model_size(settings.height, settings.width)
    batch = input_shape(load_onnx(onnx_file.path, contract=False))[0]
    fixed = {"min_batch": batch, "opt_batch": batch, "max_batch": batch} if isinstance(batch, int) else {}
    channels = 1 if target.card.input.channels == "grey" else 3
    model_side = replace(settings, precision=precision, height=height, width=width,
                         layout=target.card.input.layout, channels=channels, **fixed)
    return build_plan(onnx_file, model_side, user_group(target))


def _require_onnx(target: Target) -> None:
    if target.kind != "onnx" or target.path is None:
        raise HarnessError(f"deployment variants are made from an ONNX file (--onnx FILE); {target.name} is a "
                           f"{target.kind} target")
