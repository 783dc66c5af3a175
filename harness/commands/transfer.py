"""``transfer``: the paper's Table 2 and a deployment-gap table; the work is done by harness.transfer."""

from __future__ import annotations

import argparse

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engines.availability import DEVICES
from exporters.int8 import DEFAULT_CALIBRATION_IMAGES
from harness.commands.common import console, data_from_args, int_in
from harness.commands.engine_options import calibration_from_args
from harness.commands.whitebox_common import add_run_arguments, resolve_device
from harness.fileio import check_outputs
from harness.limits import MAX_IMAGES
from harness.models import MODELS, SIZES
from harness.threads import set_threads
from harness.transfer import (
    DEFAULT_ATTACKS,
    TransferSettings,
    check_engines,
    engine_choices,
    load_models,
    parse_attacks,
    parse_models,
    run_transfer,
    split_list,
)
from reports.results import write_results
from reports.tables import deployment_gap_table, transfer_table

HELP = "the paper's Table 2: examples crafted white-box on source models, run on target models and engines"

METRICS = {"acc": ("pixel_accuracy", "pixel accuracy"), "miou": ("mean_iou", "mIoU")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    everything = ",".join(MODELS)
    parser.add_argument("--sources", default=everything, metavar="M,...",
                        help="models the examples are crafted on, white-box in PyTorch (default: all four)")
    parser.add_argument("--targets", default=everything, metavar="M,...",
                        help="models the examples are run on, as black boxes (default: all four)")
    parser.add_argument("--engines", default="torch,ort", metavar="E,...",
                        help="engines the targets run on: torch, ort, trt (default torch,ort)")
    parser.add_argument("--precisions", default="fp32", metavar="P,...",
                        help="exported variants: fp32, fp16, int8 (default fp32; torch runs fp32 only)")
    parser.add_argument("--attacks", default=DEFAULT_ATTACKS, metavar="A,...",
                        help=f"fgsm, mifgsm[-N], pgd[-N], N steps, default 20 (default {DEFAULT_ATTACKS})")
    parser.add_argument("--metric", default="acc", choices=(*METRICS, "both"),
                        help="table values: pixel accuracy (default), mIoU, or both")
    parser.add_argument("--size", default="reduced", choices=SIZES, help="reduced CPU width (default) or paper")
    parser.add_argument("--engine-device", choices=DEVICES,
                        help="device of every engine (default: cpu for torch and ort, cuda for trt)")
    parser.add_argument("--calibration-images", type=int_in(1, MAX_IMAGES), default=DEFAULT_CALIBRATION_IMAGES,
                        metavar="N", help=f"training images that calibrate int8 exports, 1-{MAX_IMAGES} "
                        f"(default {DEFAULT_CALIBRATION_IMAGES})")
    add_run_arguments(parser)


def run(args: argparse.Namespace) -> int:
    attacks = parse_attacks(args.attacks, args.eps)
    sources = parse_models(args.sources, "--sources")
    targets = parse_models(args.targets, "--targets")
    choices = engine_choices(split_list(args.engines, "--engines"), split_list(args.precisions, "--precisions"))
    check_engines(choices, args.engine_device)
    check_outputs({"--json": args.json})
    device = resolve_device(args.device)
    set_threads()
    data = data_from_args(args, args.split, args.n_images)
    int8 = any(c.precision == "int8" and c.engine != "torch" for c in choices)
    settings = TransferSettings(size=args.size, seed=args.seed, batch_size=args.batch_size, device=str(device),
                                engine_device=args.engine_device,
                                calibration=calibration_from_args(args) if int8 else None)
    models = load_models([*sources, *targets], data, args.size)

    n_sets = len(sources) * len(attacks)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[unit]}"), TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        tasks = {
            "gradients": progress.add_task("crafting", unit="gradients",
                                           total=len(sources) * len(data) * sum(a.iterations for a in attacks)),
            "images": progress.add_task("evaluating", unit="images",
                                        total=len(targets) * len(choices) * len(data) * (1 + n_sets)),
        }

        def on_work(kind: str, description: str, n: int) -> None:
            progress.update(tasks[kind], advance=n, description=description)

        result = run_transfer(models, sources, targets, choices, attacks, data, settings, on_work)

    metrics = [METRICS[m] for m in METRICS] if args.metric == "both" else [METRICS[args.metric]]
    reference = next((c for c in choices if (c.engine, c.precision) == ("torch", "fp32")), choices[0])
    console.print(f"Transfer attacks: eps {args.eps:g}/255, {len(data)} {data.name} {data.split} images, examples "
                  f"crafted white-box on each source's torch fp32 model ({args.size} models)", highlight=False)
    for field, name in metrics:
        for choice in choices:
            console.print(transfer_table(f"Table 2, targets on {choice.label}: {name} (%), * = white-box",
                                         result.records, field, choice.engine, choice.precision))
        if set(sources) & set(targets):
            console.print(deployment_gap_table(
                f"Deployment gap: {name} (%) on each model's own examples; highlighted: more than 1 point "
                f"from {reference.label}", result.records, field, (reference.engine, reference.precision)))
    reused = sum(s.reused for s in result.example_sets.values())
    console.print(f"crafting {result.craft_seconds:.1f} s ({len(result.example_sets)} example sets, {reused} "
                  f"reused from the cache), evaluation {result.eval_seconds:.1f} s", highlight=False)
    if args.json:
        write_results(args.json, result.records)
        console.print(f"wrote {args.json}")
    return 0
