"""The ``--engine / --precision / --device`` options and opening the engine they name.

Any command that runs a model through an Engine (eval, blackbox, transfer) uses these
functions, so every command chooses and builds engines the same way: ``target_engine_from_args``
for a Target of any kind.
"""

from __future__ import annotations

import argparse

from engines.availability import DEVICES, ENGINES
from engines.base import Engine
from exporters.int8 import DEFAULT_CALIBRATION_IMAGES
from exporters.onnx_file import PRECISIONS
from harness.commands.common import data_from_args, int_in
from harness.data.base import SegmentationData
from harness.limits import MAX_BATCH, MAX_IMAGES
from harness.targets.target import Target, target_engine

_KIND_ENGINES = {"onnx": "ort", "plan": "trt", "torch": "torch"}


def add_engine_arguments(parser: argparse.ArgumentParser, default_engine: str = "torch") -> None:
    """Add ``--engine``, ``--precision``, ``--device``, ``--calibration-images`` and ``--engine-batch``."""
    group = parser.add_argument_group("engine")
    # None until resolved: the default depends on the target (an ONNX file runs on ort, a plan on trt).
    group.add_argument("--engine", choices=ENGINES,
                       help=f"torch (eager), ort (ONNX Runtime) or trt (TensorRT) (default {default_engine}; "
                            "--onnx: ort, --plan: trt, --torch: torch)")
    parser.set_defaults(engine_default=default_engine)
    group.add_argument("--precision", choices=PRECISIONS,
                       help="the exported variant the engine runs: fp32, fp16 or int8 (ort, trt); default: fp32, "
                            "for --onnx the file's own precision")
    group.add_argument("--device", choices=DEVICES, help="cpu or cuda (default: cpu; cuda for trt)")
    group.add_argument("--calibration-images", type=int_in(1, MAX_IMAGES), default=DEFAULT_CALIBRATION_IMAGES,
                       metavar="N", help=f"training images that calibrate an int8 export, 1-{MAX_IMAGES} "
                       f"(default {DEFAULT_CALIBRATION_IMAGES})")
    group.add_argument("--engine-batch", type=int_in(1, MAX_BATCH), metavar="N",
                       help=f"largest batch the engine runs at once, 1-{MAX_BATCH} (default: 64; TensorRT profile: 32)")


def calibration_from_args(args: argparse.Namespace) -> SegmentationData:
    """The first ``--calibration-images`` training images of the data the command was given."""
    n = getattr(args, "calibration_images", None) or DEFAULT_CALIBRATION_IMAGES
    return data_from_args(args, "train", n)


def engine_name(args: argparse.Namespace, target: Target | None = None) -> str:
    """``--engine`` when given, else the default for ``target``'s kind (onnx: ort, plan: trt, torch: torch) or
    the command's default (built-in models). Sets ``args.engine`` to it, so later readers see what runs."""
    if getattr(args, "engine", None) is None:
        kind = None if target is None else target.kind
        args.engine = _KIND_ENGINES.get(kind) or getattr(args, "engine_default", None) or "torch"
    return str(args.engine)


def precision_name(args: argparse.Namespace, target: Target) -> str:
    """``--precision`` when given, else the precision of an ``--onnx`` file as it stands (an fp16 or QDQ file
    runs as itself) or fp32. Sets ``args.precision`` to it, so later readers (titles, records) see what runs."""
    if getattr(args, "precision", None) is None:
        if target.kind == "onnx":
            from exporters.user_variants import own_precision

            args.precision = own_precision(target)
        else:
            args.precision = "fp32"
    return str(args.precision)


def target_engine_from_args(args: argparse.Namespace, target: Target, data: SegmentationData) -> Engine:
    """The Engine (not yet entered) the options name for ``target`` (harness.targets.target.target_engine):
    ``--engine`` (default by target kind), ``--precision``, ``--device``, ``--calibration-images`` (int8),
    ``--engine-batch``."""
    engine = engine_name(args, target)
    precision = precision_name(args, target)
    calibration = calibration_from_args(args) if precision == "int8" and engine != "torch" else None
    return target_engine(target, engine, precision, getattr(args, "device", None), data, calibration=calibration,
                         max_batch=getattr(args, "engine_batch", None))
