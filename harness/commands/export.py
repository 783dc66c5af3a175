"""``export``: ONNX (fp32, fp16, int8 QDQ) and TensorRT plans of trained models or of a user's ONNX file,
each checked against its reference.

Artifacts live in the cache keyed by content hash (``--out`` copies them out). After every export
the artifact runs on validation images beside its reference: the PyTorch model for ``--model``,
the user's own file on ONNX Runtime for ``--onnx FILE`` (whose variants keep its I/O and card).
The command fails with exit code 1 when the argmax agreement is below the precision's threshold.
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
from exporters.tensorrt_plan import PlanSettings
from exporters.user_variants import check_variants, user_group, user_onnx_variant, user_plan
from harness.commands.common import (
    add_data_arguments,
    console,
    data_from_args,
    float_in,
    int_in,
)
from harness.commands.engine_options import calibration_from_args
from harness.commands.target_options import DEFAULT_SIZE, add_target_arguments, target_from_args
from harness.errors import CHECK_FAILED, HarnessError
from harness.fileio import atomic_path, cache_dir, check_outputs, write_json_atomic
from harness.limits import MAX_BATCH, MAX_IMAGES
from harness.models import MODELS
from harness.targets.target import Target, builtin_target, torch_model
from harness.threads import set_threads
from reports.tables import ReadableTable

HELP = ("export trained models or your ONNX file to ONNX (fp32/fp16/int8) or TensorRT plans, with a parity "
        "check against PyTorch or your fp32 ONNX file")
FORMATS = ("onnx", "trt")
# What export cannot take, and why: one line each (the target options are shared with the other commands).
_NOT_EXPORTED = {
    "plan": "a TensorRT plan is a deployment artifact already; export makes variants of --model NAME or --onnx FILE",
    "torch": "export makes variants of --model NAME or --onnx FILE; export your PyTorch model to ONNX first "
             "(torch.onnx.export) and pass that file with --onnx FILE --card card.toml",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser, required=False, refused=_NOT_EXPORTED)
    parser.add_argument("--all", action="store_true", help="export all four models (each needs its checkpoint)")
    group = parser.add_argument_group("export")
    group.add_argument("--format", default="onnx", choices=FORMATS,
                       help="onnx (default; checked on ONNX Runtime) or trt (a TensorRT plan; needs a GPU)")
    group.add_argument("--precision", nargs="+", default=["fp32"], choices=PRECISIONS, metavar="P",
                       help="one or more of fp32 (default), fp16, int8")
    group.add_argument("--opset", type=int_in(MIN_OPSET, max_opset()),
                       help=f"ONNX opset, {MIN_OPSET}-{max_opset()}: what the installed torch.onnx exporter "
                       f"supports (default {DEFAULT_OPSET}; --model only: --onnx FILE keeps its own)")
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
                       help=f"validation images compared with the reference (PyTorch; for --onnx your fp32 file), "
                       f"1-{MAX_IMAGES} (default 32)")
    group.add_argument("--min-agreement", type=float_in(0, 100), metavar="PCT",
                       help="fail below this argmax agreement in %% (0-100) for every precision (default: "
                       + ", ".join(f"{p} {100 * v:g}" for p, v in DEFAULT_MIN_AGREEMENT.items()) + ")")
    group.add_argument("--json", metavar="FILE", help="write the artifacts and parity reports to FILE")
    add_data_arguments(parser)


def run(args: argparse.Namespace) -> int:
    for kind, message in _NOT_EXPORTED.items():
        if getattr(args, kind, None):
            raise HarnessError(message)
    if getattr(args, "onnx", None):
        return _run_user_file(args)
    names = _model_names(args)
    args.size = args.size or DEFAULT_SIZE
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
        model, source = torch_model(builtin_target(name, args.size, args.checkpoint, args.weights, val), val)
        with TorchEngine(model, device=device, artifact_sha256=source["sha256"]) as reference:
            for precision in precisions:
                console.print(f"{name}: {args.format} {precision} ...", highlight=False)
                artifact = artifact_for(engine_name, model, source, val, precision=precision, calibration=calibration,
                                        max_batch=args.max_batch, opset=args.opset or DEFAULT_OPSET)
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
    return _verdict(rows)


def _model_names(args: argparse.Namespace) -> list[str]:
    if args.all and args.model:
        raise HarnessError("give --model NAME or --all, not both")
    if not args.all and not args.model:
        raise HarnessError("give --model NAME or --all (or --onnx FILE for your own ONNX file)")
    if getattr(args, "card", None) or getattr(args, "card_set", None):
        raise HarnessError("--card and --card-set describe a user's file (--onnx FILE); the built-in models need none")
    if args.all and (args.checkpoint or args.weights):
        raise HarnessError("--checkpoint/--weights name one model's file; use them with --model, not --all")
    return list(MODELS) if args.all else [args.model]


def _engine(name: str, artifact: Artifact, device: str, target: Target | None = None,
            max_batch: int | None = None) -> Engine:
    card = None if target is None else target.card
    if name == "ort":
        return OrtEngine(artifact.path, device=device, card=card)
    return TrtEngine(artifact.path, precision=artifact.precision, card=card, max_batch=max_batch)


def _run_user_file(args: argparse.Namespace) -> int:
    """``export --onnx FILE``: the variants of the user's file, each against the file itself on ONNX Runtime."""
    if args.all:
        raise HarnessError("--all exports the built-in models; give it or --onnx FILE, not both")
    if args.opset is not None:
        raise HarnessError("--opset applies to the torch -> ONNX export of --model; the variants of --onnx FILE "
                           "keep the file's own opset")
    min_agreement = None if args.min_agreement is None else args.min_agreement / 100
    check_outputs({"--json": args.json}, {"--out": args.out})
    precisions = list(dict.fromkeys(args.precision))
    engine_name = "ort" if args.format == "onnx" else "trt"
    reference_device = resolve_device("ort", "fp32", args.device)  # the user's file runs on ONNX Runtime
    device = reference_device
    for precision in precisions:
        device = resolve_device(engine_name, precision, args.device if engine_name == "ort" else None)
    set_threads()
    val = data_from_args(args, "val", args.n_images)
    target = target_from_args(args, val)
    own = check_variants(target, precisions)  # what cannot be made is said before any work
    calibration = calibration_from_args(args) if "int8" in precisions and own != "int8" else None
    rows: list[tuple[str, Artifact, ParityReport | None]] = []
    with OrtEngine(target.path, device=reference_device, card=target.card) as reference:
        for precision in precisions:
            console.print(f"{target.name}: {args.format} {precision} ...", highlight=False)
            if engine_name == "ort":
                artifact = user_onnx_variant(target, precision, calibration)
            else:
                height, width = val.image_size
                artifact = user_plan(target, precision, calibration, PlanSettings(
                    precision=precision, height=height, width=width, opt_batch=min(16, args.max_batch),
                    max_batch=args.max_batch))
            report = None
            if engine_name == "ort" and artifact.path == target.path:
                console.print(f"{target.name}: {target.path} is {precision} already: it is its own {precision} "
                              "variant and the parity reference", highlight=False)
            else:
                with _engine(engine_name, artifact, device, target, args.max_batch) as candidate:
                    report = compare(reference, candidate, val, label=target.name, precision=precision,
                                     min_agreement=min_agreement)
            rows.append((target.name, artifact, report))
            if args.out:
                _copy_out(artifact, Path(args.out) / f"{target.name}.{precision}.{_suffix(args.format)}")
    folder = cache_dir() / "artifacts" / user_group(target)
    console.print(_artifact_table(args, rows, f"{args.format} variants of {target.path} in {folder}/"))
    reports = [r for _, _, r in rows if r is not None]
    if reports:
        console.print(parity_table(f"Parity against {target.name}'s {own} ONNX ({target.path.name}, ONNX Runtime "
                                   f"on {reference_device}) on {len(val)} {val.name} validation images, "
                                   f"{engine_name} on {device}", reports, reference=f"{own} onnx"))
    if args.json:
        write_json_atomic(args.json, {"format": args.format, "device": device, "reference": target.describe(),
                                      "artifacts": [
            {"model": name, "path": str(a.path), "sha256": a.sha256, "reused": a.reused, "precision": a.precision,
             "is_reference": r is None, "parity": None if r is None else r.as_dict()} for name, a, r in rows]})
        console.print(f"wrote {args.json}")
    return _verdict(rows)


def _verdict(rows: list[tuple[str, Artifact, ParityReport | None]]) -> int:
    """0 when every parity report passed; HarnessError with exit code 1 naming the ones that did not."""
    failed = [f"{r.label} {r.precision} ({100 * r.agreement:.3f} % < {100 * r.min_agreement:g} %)"
              for _, _, r in rows if r is not None and not r.passed]
    if failed:
        raise HarnessError(f"parity below threshold: {'; '.join(failed)}", exit_code=CHECK_FAILED)
    return 0


def _suffix(fmt: str) -> str:
    return "onnx" if fmt == "onnx" else "plan"


def _copy_out(artifact: Artifact, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(artifact.path, tmp)


def _artifact_table(args: argparse.Namespace, rows: list[tuple[str, Artifact, ParityReport | None]],
                    title: str | None = None) -> Table:
    table = ReadableTable(title=title or f"{args.format} artifacts in {cache_dir() / 'artifacts'}/MODEL--{args.size}/")
    for column in ("model", "precision", "file", "sha256", "size", ""):
        table.add_column(column, justify="right" if column == "size" else "left", no_wrap=True)
    for name, a, report in rows:
        # The key folder and file name; --json has the full path.
        state = "the file itself" if report is None else "cached" if a.reused else "built"
        shown = str(a.path) if report is None else f"{a.path.parent.name}/{a.path.name}"
        table.add_row(name, a.precision, shown, a.sha256[:12],
                      f"{a.path.stat().st_size / 2**20:.1f} MiB", state)
    return table
