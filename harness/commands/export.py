"""``export``: ONNX (fp32, fp16, int8 QDQ) and TensorRT plans of trained models, each checked against PyTorch.

Artifacts live in the cache keyed by content hash (``--out`` copies them out). After every export
the artifact runs on validation images beside the PyTorch model; the command fails with exit
code 1 when the argmax agreement is below the precision's threshold.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from rich.table import Table

from engines.availability import DEVICES
from engines.base import Engine
from engines.factory import DEFAULT_TRT_MAX_BATCH, artifact_for, resolve_device
from engines.ort_engine import OrtEngine
from engines.torch_engine import TorchEngine
from engines.trt_engine import TrtEngine
from exporters.artifacts import Artifact
from exporters.int8 import DEFAULT_CALIBRATION_IMAGES
from exporters.onnx_export import DEFAULT_OPSET, MIN_OPSET, max_opset
from exporters.onnx_file import PRECISIONS
from exporters.parity import DEFAULT_MIN_AGREEMENT, ParityReport, compare, parity_table
from harness.commands.common import (
    add_data_arguments,
    add_model_arguments,
    console,
    data_from_args,
    float_in,
    int_in,
    load_model,
)
from harness.commands.engine_options import calibration_from_args
from harness.errors import CHECK_FAILED, HarnessError
from harness.fileio import atomic_path, cache_dir, check_outputs, write_json_atomic
from harness.limits import MAX_BATCH, MAX_IMAGES
from harness.models import MODELS
from harness.threads import set_threads
from reports.tables import ReadableTable

HELP = "export trained models to ONNX (fp32/fp16/int8) or TensorRT plans, with a parity check against PyTorch"
FORMATS = ("onnx", "trt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, required=False)
    parser.add_argument("--all", action="store_true", help="export all four models (each needs its checkpoint)")
    group = parser.add_argument_group("export")
    group.add_argument("--format", default="onnx", choices=FORMATS,
                       help="onnx (default; checked on ONNX Runtime) or trt (a TensorRT plan; needs a GPU)")
    group.add_argument("--precision", nargs="+", default=["fp32"], choices=PRECISIONS, metavar="P",
                       help="one or more of fp32 (default), fp16, int8")
    group.add_argument("--opset", type=int_in(MIN_OPSET, max_opset()), default=DEFAULT_OPSET,
                       help=f"ONNX opset, {MIN_OPSET}-{max_opset()}: what the installed torch.onnx exporter "
                       f"supports (default {DEFAULT_OPSET})")
    group.add_argument("--out", metavar="DIR", help="also copy the artifacts to DIR")
    group.add_argument("--device", choices=DEVICES, help="where the parity check runs the ONNX file: cpu "
                       "(default) or cuda (onnxruntime-gpu); TensorRT always runs on cuda")
    group.add_argument("--calibration-images", type=int_in(1, MAX_IMAGES), default=DEFAULT_CALIBRATION_IMAGES,
                       metavar="N", help=f"training images that calibrate int8, 1-{MAX_IMAGES} "
                       f"(default {DEFAULT_CALIBRATION_IMAGES})")
    group.add_argument("--max-batch", type=int_in(1, MAX_BATCH), default=DEFAULT_TRT_MAX_BATCH, metavar="N",
                       help=f"largest batch of the TensorRT optimisation profile, 1-{MAX_BATCH} "
                       f"(default {DEFAULT_TRT_MAX_BATCH})")
    group = parser.add_argument_group("parity check")
    group.add_argument("--n-images", type=int_in(1, MAX_IMAGES), default=32, metavar="N",
                       help=f"validation images compared with PyTorch, 1-{MAX_IMAGES} (default 32)")
    group.add_argument("--min-agreement", type=float_in(0, 100), metavar="PCT",
                       help="fail below this argmax agreement in %% (0-100) for every precision (default: "
                       + ", ".join(f"{p} {100 * v:g}" for p, v in DEFAULT_MIN_AGREEMENT.items()) + ")")
    group.add_argument("--json", metavar="FILE", help="write the artifacts and parity reports to FILE")
    add_data_arguments(parser)


def run(args: argparse.Namespace) -> int:
    names = _model_names(args)
    min_agreement = None if args.min_agreement is None else args.min_agreement / 100
    check_outputs({"--json": args.json}, {"--out": args.out})
    precisions = list(dict.fromkeys(args.precision))
    engine_name = "ort" if args.format == "onnx" else "trt"
    device = ""
    for precision in precisions:
        device = resolve_device(engine_name, precision, args.device)  # fails before any work
    set_threads()
    val = data_from_args(args, "val", args.n_images)
    calibration = calibration_from_args(args) if "int8" in precisions else None
    rows: list[tuple[str, Artifact, ParityReport]] = []
    for name in names:
        model, source = load_model(args, val, name)
        with TorchEngine(model, device=device, artifact_sha256=source["sha256"]) as reference:
            for precision in precisions:
                console.print(f"{name}: {args.format} {precision} ...", highlight=False)
                artifact = artifact_for(engine_name, model, source, val, precision=precision, calibration=calibration,
                                        max_batch=args.max_batch, opset=args.opset)
                assert artifact is not None
                with _engine(engine_name, artifact, device) as candidate:
                    report = compare(reference, candidate, val, label=name, precision=precision,
                                     min_agreement=min_agreement)
                rows.append((name, artifact, report))
                if args.out:
                    _copy_out(artifact, Path(args.out) / f"{name}-{args.size}.{precision}.{_suffix(args.format)}")
    console.print(_artifact_table(args, rows))
    console.print(parity_table(f"Parity against PyTorch ({args.size}) on {len(val)} {val.name} validation images, "
                               f"{engine_name} on {device}", [r for _, _, r in rows]))
    if args.json:
        write_json_atomic(args.json, {"format": args.format, "device": device, "artifacts": [
            {"model": name, "size": args.size, "path": str(a.path), "sha256": a.sha256, "reused": a.reused,
             "parity": r.as_dict()} for name, a, r in rows]})
        console.print(f"wrote {args.json}")
    failed = [f"{r.label} {r.precision} ({100 * r.agreement:.3f} % < {100 * r.min_agreement:g} %)"
              for _, _, r in rows if not r.passed]
    if failed:
        raise HarnessError(f"parity below threshold: {'; '.join(failed)}", exit_code=CHECK_FAILED)
    return 0


def _model_names(args: argparse.Namespace) -> list[str]:
    if args.all and args.model:
        raise HarnessError("give --model NAME or --all, not both")
    if not args.all and not args.model:
        raise HarnessError("give --model NAME or --all")
    if args.all and (args.checkpoint or args.weights):
        raise HarnessError("--checkpoint/--weights name one model's file; use them with --model, not --all")
    return list(MODELS) if args.all else [args.model]


def _engine(name: str, artifact: Artifact, device: str) -> Engine:
    if name == "ort":
        return OrtEngine(artifact.path, device=device)
    return TrtEngine(artifact.path, precision=artifact.precision)


def _suffix(fmt: str) -> str:
    return "onnx" if fmt == "onnx" else "plan"


def _copy_out(artifact: Artifact, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(artifact.path, tmp)


def _artifact_table(args: argparse.Namespace, rows: list[tuple[str, Artifact, ParityReport]]) -> Table:
    table = ReadableTable(title=f"{args.format} artifacts in {cache_dir() / 'artifacts'}/MODEL--{args.size}/")
    for column in ("model", "precision", "file", "sha256", "size", ""):
        table.add_column(column, justify="right" if column == "size" else "left", no_wrap=True)
    for name, a, _ in rows:
        # The key folder and file name; --json has the full path.
        table.add_row(name, a.precision, f"{a.path.parent.name}/{a.path.name}", a.sha256[:12],
                      f"{a.path.stat().st_size / 2**20:.1f} MiB", "cached" if a.reused else "built")
    return table
