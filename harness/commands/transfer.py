"""``transfer``: the paper's Table 2 and a deployment-gap table; the work is done by harness.transfer.

Sources are PyTorch models (built-in names and/or one of the user's, ``--source-torch``); targets are
built-in names and/or one user target (``--onnx``/``--plan``/``--torch`` with ``--card``), so "do examples
crafted on my PyTorch model still fool my int8 engine?" is one command::

    python -m harness transfer --source-torch mymodel:build --source-weights w.pt --source-card torch.toml \
        --onnx model.onnx --card card.toml --engines ort --precisions fp32,int8
"""

from __future__ import annotations

import argparse

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engines.availability import DEVICES
from exporters.int8 import DEFAULT_CALIBRATION_IMAGES
from harness.commands.common import console, data_from_args, int_in
from harness.commands.engine_options import calibration_from_args
from harness.commands.target_options import TARGET_OPTIONS, add_target_arguments, given_kind, target_from_args
from harness.commands.whitebox_common import add_run_arguments, resolve_device
from harness.errors import HarnessError
from harness.fileio import check_outputs
from harness.limits import MAX_IMAGES
from harness.models import MODELS, SIZES
from harness.targets.card import load_card
from harness.targets.target import Target, torch_target
from harness.threads import set_threads
from harness.transfer import (
    DEFAULT_ATTACKS,
    TransferModel,
    TransferSettings,
    check_engines,
    engine_choices,
    load_models,
    parse_attacks,
    parse_models,
    run_transfer,
    split_list,
    target_choices,
)
from reports.results import write_results
from reports.tables import deployment_gap_table, transfer_table

HELP = "the paper's Table 2: examples crafted white-box on source models, run on target models and engines"

METRICS = {"acc": ("pixel_accuracy", "pixel accuracy"), "miou": ("mean_iou", "mIoU")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sources", metavar="M,...",
                        help="built-in models the examples are crafted on, white-box in PyTorch (default: all four, "
                             "none when --source-torch is given)")
    parser.add_argument("--targets", metavar="M,...",
                        help="built-in models the examples are run on, as black boxes (default: all four, none when "
                             "--onnx, --plan or --torch gives your target)")
    group = parser.add_argument_group("your source model (examples crafted white-box on it)")
    group.add_argument("--source-torch", metavar="MODULE:CALLABLE",
                       help="a function in your code (imported from the current directory) returning a "
                            "torch.nn.Module the examples are crafted on")
    group.add_argument("--source-weights", metavar="FILE", help="the state dict loaded into --source-torch")
    group.add_argument("--source-card", metavar="FILE",
                       help="the model card (TOML) of --source-torch; a source and a target with the same name "
                            "(the cards' name field) are one model: white box, and the deployment-gap table")
    add_target_arguments(parser, kinds=("onnx", "plan", "torch"), required=False)
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
    if args.source_torch is None and (args.source_weights or args.source_card):
        raise HarnessError("--source-weights and --source-card complete --source-torch MODULE:CALLABLE; give it too")
    user_target = given_kind(args) is not None
    sources = _names(args.sources, "--sources", none_by_default=args.source_torch is not None)
    targets = _names(args.targets, "--targets", none_by_default=user_target)
    choices = engine_choices(split_list(args.engines, "--engines"), split_list(args.precisions, "--precisions"))
    check_engines(choices, args.engine_device)
    check_outputs({"--json": args.json})
    device = resolve_device(args.device)
    set_threads()
    data = data_from_args(args, args.split, args.n_images)
    builtin = list(dict.fromkeys([*sources, *targets]))
    # The user's models first: their checks are cheap, loading the built-in checkpoints is not.
    users: dict[str, Target] = {}
    user_targets: dict[str, Target] = {}
    if args.source_torch is not None:
        card = load_card(args.source_card) if args.source_card else None
        source = torch_target(args.source_torch, args.source_weights, card, data)
        _check_name(source.name, builtin, "--source-torch")
        users[source.name] = source
        sources.append(source.name)
    if user_target:
        # transfer's --size is the built-in models' width; the target options read it as --model's.
        target = target_from_args(argparse.Namespace(**{**vars(args), "size": None}), data)
        _check_name(target.name, builtin, TARGET_OPTIONS[given_kind(args) or "onnx"])
        target_choices(target.name, target, choices)  # an engine it runs on was chosen
        if target.name in users:  # the user's source of the same name: another artifact of that model
            user_targets[target.name] = target
        else:
            users[target.name] = target
        targets.append(target.name)
    if not sources:
        raise HarnessError("no sources: give --sources NAME,... or --source-torch MODULE:CALLABLE")
    if not targets:
        raise HarnessError("no targets: give --targets NAME,... or --onnx FILE, --plan FILE or --torch MODULE:CALLABLE")
    models: dict[str, TransferModel] = {**load_models(builtin, data, args.size), **users}
    runs = {name: target_choices(name, user_targets.get(name, models[name]), choices) for name in targets}
    int8 = any(c.precision == "int8" and c.engine != "torch" for kept in runs.values() for c in kept)
    settings = TransferSettings(size=args.size, seed=args.seed, batch_size=args.batch_size, device=str(device),
                                engine_device=args.engine_device,
                                calibration=calibration_from_args(args) if int8 else None)

    n_sets = len(sources) * len(attacks)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[unit]}"), TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        tasks = {
            "gradients": progress.add_task("crafting", unit="gradients",
                                           total=len(sources) * len(data) * sum(a.iterations for a in attacks)),
            "images": progress.add_task("evaluating", unit="images",
                                        total=sum(map(len, runs.values())) * len(data) * (1 + n_sets)),
        }

        def on_work(kind: str, description: str, n: int) -> None:
            progress.update(tasks[kind], advance=n, description=description)

        result = run_transfer(models, sources, targets, choices, attacks, data, settings, on_work,
                              target_models=user_targets)

    metrics = [METRICS[m] for m in METRICS] if args.metric == "both" else [METRICS[args.metric]]
    ran = [c for c in choices if any(c in kept for kept in runs.values())]
    reference = next((c for c in ran if (c.engine, c.precision) == ("torch", "fp32")), ran[0])
    console.print(f"Transfer attacks: eps {args.eps:g}/255, {len(data)} {data.name} {data.split} images, examples "
                  f"crafted white-box on each source's torch fp32 model ({_described(models, sources, args.size)})",
                  highlight=False)
    for field, name in metrics:
        for choice in ran:
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


def _names(text: str | None, option: str, none_by_default: bool) -> list[str]:
    """The built-in models ``option`` names; by default all four, or none when the user gives their own."""
    if text is None:
        return [] if none_by_default else list(MODELS)
    return parse_models(text, option)


def _check_name(name: str, builtin: list[str], option: str) -> None:
    """A user's model must not take the name of a built-in model of the same run: records are keyed by name."""
    if name in builtin:
        raise HarnessError(f"{option}: a built-in model is named {name} too; set another name in its card "
                           "(name = ...)")


def _described(models: dict[str, TransferModel], sources: list[str], size: str) -> str:
    """How the title names the sources: the built-in models' size, the user's kind."""
    parts = [f"{name}: your {models[name].kind} model" for name in sources if isinstance(models[name], Target)]
    if any(not isinstance(models[name], Target) for name in sources):
        parts.insert(0, f"{size} built-in models")
    return ", ".join(parts)
