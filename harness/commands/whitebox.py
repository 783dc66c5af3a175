"""``whitebox``: the paper's Table 1, accuracy of each model under FGSM, MI-FGSM and PGD."""

from __future__ import annotations

import argparse

from harness.attacks import Attack, attacks_from_names
from harness.commands.common import console, data_from_args, load_model
from harness.commands.whitebox_common import (
    add_run_arguments,
    attack_records,
    gradient_progress,
    resolve_device,
    run_attack,
)
from harness.fileio import check_outputs
from harness.models import MODELS, SIZES
from harness.threads import set_threads
from reports.results import write_results
from reports.tables import robustness_table

HELP = "the paper's Table 1: pixel accuracy and mIoU of each model, clean and under white-box attacks"

DEFAULT_COLUMNS = "fgsm,mifgsm-20,pgd-20,pgd-100,pgd-200"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), metavar="NAME",
                        help=f"rows of the table (default: all of {', '.join(MODELS)})")
    parser.add_argument("--size", default="reduced", choices=SIZES, help="reduced CPU width (default) or paper")
    parser.add_argument("--columns", default=DEFAULT_COLUMNS,
                        help=f"comma-separated attacks: fgsm, mifgsm-N, pgd-N (default {DEFAULT_COLUMNS}); "
                             "the clean column is always there")
    add_run_arguments(parser)
    # load_model reads these; the table uses the cached checkpoint of each model.
    parser.set_defaults(checkpoint=None, weights=None)


def parse_columns(text: str, eps: float) -> list[Attack]:
    """``fgsm,mifgsm-20,pgd-100`` -> attacks with their default step sizes; HarnessError on a bad or repeated name."""
    return attacks_from_names([part.strip() for part in text.split(",")], eps, "--columns", "column")


def run(args: argparse.Namespace) -> int:
    attacks = parse_columns(args.columns, args.eps)
    check_outputs({"--json": args.json})
    args.device = resolve_device(args.device)
    set_threads()
    data = data_from_args(args, args.split, args.n_images)
    models = {name: load_model(args, data, name) for name in dict.fromkeys(args.models)}
    records = []
    with gradient_progress() as progress:
        task = progress.add_task("whitebox", total=len(models) * len(data) * sum(a.iterations for a in attacks))
        for name, (model, source) in models.items():
            model.to(args.device)
            for i, attack in enumerate(attacks):
                progress.update(task, description=f"{name} {attack.label}")
                evaluation = run_attack(model, data, attack, args, progress, task)
                # Every attack sees the same images, so one clean record per model is the baseline of all.
                records += attack_records(name, source, data, attack, evaluation, args, with_clean=i == 0)
    title = (f"White-box attacks, eps {args.eps:g}/255, {data.name} {data.split}, {len(data)} images "
             f"({args.size} models)")
    console.print(robustness_table(f"{title}: pixel accuracy (%)", records, "pixel_accuracy"))
    console.print(robustness_table(f"{title}: mIoU (%)", records, "mean_iou"))
    if args.json:
        write_results(args.json, records)
        console.print(f"wrote {args.json}")
    return 0
