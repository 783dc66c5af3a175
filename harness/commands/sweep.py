"""``sweep``: the paper's Figure 3, accuracy against the number of PGD iterations (α = ε / iterations)."""

from __future__ import annotations

import argparse

from harness.attacks import PGD
from harness.commands.common import console, data_from_args
from harness.commands.whitebox_common import (
    add_row_arguments,
    add_run_arguments,
    attack_records,
    gradient_progress,
    load_rows,
    resolve_device,
    row_targets,
    run_attack,
)
from harness.errors import HarnessError
from harness.fileio import check_outputs
from harness.limits import MAX_STEPS, MAX_SWEEP_POINTS
from harness.threads import set_threads
from reports.figures import plot_pgd_sweep
from reports.results import write_results
from reports.tables import robustness_table

HELP = "the paper's Figure 3: accuracy against PGD iterations (step size eps/iterations), JSON and PNG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_row_arguments(parser, ["fcn-resnet50"], "built-in models, one curve each (fcn-resnet50 as in the paper); "
                                                "or one target: --model, --torch")
    parser.add_argument("--sweep-steps", default="20,40,60,80,100",
                        help="comma-separated PGD iteration counts (default 20,40,60,80,100)")
    parser.add_argument("--png", default="pgd_sweep.png", help="figure path (default pgd_sweep.png)")
    add_run_arguments(parser)
    parser.set_defaults(json="pgd_sweep.json")


def parse_steps(text: str) -> list[int]:
    try:
        steps = [int(part) for part in text.split(",")]
    except ValueError:
        text = text if len(text) <= 40 else text[:30] + "..."
        raise HarnessError(f"--sweep-steps {text!r} must be comma-separated integers, e.g. 20,40,60") from None
    if len(steps) > MAX_SWEEP_POINTS:
        raise HarnessError(f"--sweep-steps: {len(steps)} counts; at most {MAX_SWEEP_POINTS}")
    if any(not 1 <= s <= MAX_STEPS for s in steps) or len(set(steps)) != len(steps):
        raise HarnessError(f"--sweep-steps {text!r}: each count must be in [1, {MAX_STEPS}] and appear once")
    return sorted(steps)


def run(args: argparse.Namespace) -> int:
    steps = parse_steps(args.sweep_steps)
    # As in the paper's Figure 3: the step size shrinks with the number of iterations.
    attacks = [PGD(args.eps, n, alpha=args.eps / n) for n in steps]
    check_outputs({"--json": args.json, "--png": args.png})
    args.device = resolve_device(args.device)
    set_threads()
    data = data_from_args(args, args.split, args.n_images)
    rows = load_rows(row_targets(args, data), data)
    records = []
    with gradient_progress() as progress:
        task = progress.add_task("sweep", total=len(rows) * len(data) * sum(steps))
        for target, model, source in rows:
            model.to(args.device)
            for i, attack in enumerate(attacks):
                progress.update(task, description=f"{target.name} {attack.label}")
                evaluation = run_attack(model, data, attack, args, progress, task)
                records += attack_records(target, source, data, attack, evaluation, args, with_clean=i == 0)
    title = f"PGD, eps {args.eps:g}/255, alpha = eps/iterations, {data.name} {data.split}, {len(data)} images"
    console.print(robustness_table(f"{title}: pixel accuracy (%)", records, "pixel_accuracy"))
    plot_pgd_sweep(records, args.png, title)
    write_results(args.json, records)
    console.print(f"wrote {args.json} and {args.png}")
    return 0
