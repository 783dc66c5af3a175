"""``whitebox``: the paper's Table 1, accuracy of each model under FGSM, MI-FGSM and PGD."""

from __future__ import annotations

import argparse

from harness.attacks import ATTACK_NAMES_HELP, Attack, attacks_from_names
from harness.commands.common import console, data_from_args
from harness.commands.whitebox_common import (
    add_row_arguments,
    add_run_arguments,
    attack_records,
    gradient_progress,
    load_rows,
    resolve_device,
    row_targets,
    rows_title,
    run_attack,
)
from harness.fileio import check_outputs
from harness.models import MODELS
from harness.threads import set_threads
from reports.results import write_results
from reports.tables import attack_notes, robustness_table

HELP = "the paper's Table 1: pixel accuracy and mIoU of each model, clean and under white-box attacks"

DEFAULT_COLUMNS = "fgsm,mifgsm-20,pgd-20,pgd-100,pgd-200"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_row_arguments(parser, list(MODELS), "built-in models, the rows of the table, each with its cached "
                                            "checkpoint; or one target: --model, --torch")
    parser.add_argument("--columns", default=DEFAULT_COLUMNS,
                        help=f"comma-separated attacks: {ATTACK_NAMES_HELP} (default {DEFAULT_COLUMNS}); "
                             "the clean column is always there")
    add_run_arguments(parser)


def parse_columns(text: str, eps: float) -> list[Attack]:
    """``fgsm,mifgsm-20,pgd-100`` -> attacks with their default step sizes; HarnessError on a bad or repeated name."""
    return attacks_from_names([part.strip() for part in text.split(",")], eps, "--columns", "column")


def run(args: argparse.Namespace) -> int:
    attacks = parse_columns(args.columns, args.eps)
    check_outputs({"--json": args.json})
    args.device = resolve_device(args.device)
    set_threads()
    data = data_from_args(args, args.split, args.n_images)
    targets = row_targets(args, data)
    rows = load_rows(targets, data)
    records = []
    with gradient_progress() as progress:
        task = progress.add_task("whitebox", total=len(rows) * len(data) * sum(a.iterations for a in attacks))
        for target, model, source in rows:
            model.to(args.device)
            for i, attack in enumerate(attacks):
                progress.update(task, description=f"{target.name} {attack.label}")
                evaluation = run_attack(model, data, attack, args, progress, task)
                # Every attack sees the same images, so one clean record per model is the baseline of all.
                records += attack_records(target, source, data, attack, evaluation, args, with_clean=i == 0)
    title = (f"White-box attacks, eps {args.eps:g}/255, {data.name} {data.split}, {len(data)} images "
             f"({rows_title(targets)})")
    console.print(robustness_table(f"{title}: pixel accuracy (%)", records, "pixel_accuracy"))
    console.print(robustness_table(f"{title}: mIoU (%)", records, "mean_iou"))
    for table in attack_notes(title, records):
        console.print(table)
    if args.json:
        write_results(args.json, records)
        console.print(f"wrote {args.json}")
    return 0
