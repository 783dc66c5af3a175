"""``suite``: run a robustness suite (default: the built-in one) and write results.json, data and a report."""

from __future__ import annotations

import argparse

from rich.console import Console

from harness import distributed
from harness.suite.config import load_suite
from harness.suite.progress import SuiteProgress
from harness.suite.runner import check_run_dir, run_suite
from reports.suite_report import load_run, print_tables, render_report, summary_tables

HELP = "run a robustness suite (TOML; default: the paper's experiments): results.json, figures and a report"

# Wide enough for the summary tables in CI logs and files, where rich would default to 80 columns.
console = Console()
console.width = max(console.width, 140)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="suite file (TOML: built-in [models] and/or your own models "
                        "as [[targets]] tables; default: the built-in default suite, harness/suite/default.toml)")
    parser.add_argument("--out", metavar="DIR", help="run directory (default: runs/NAME, NAME from the suite)")


def run(args: argparse.Namespace) -> int:
    config = load_suite(args.config)
    out = args.out or f"runs/{config.name}"
    check_run_dir(out, "--out" if args.out else "the run directory")
    distributed.barrier()  # every rank has checked the directory before rank 0 writes into it
    console.print(f"suite {config.name} ({config.source}) -> {out}", highlight=False)
    result = run_suite(config, out, SuiteProgress(console))
    if not distributed.job().main:
        return 0  # under torchrun rank 0 alone wrote the run: it alone reads it back and reports
    recorded = load_run(out)
    report = render_report(recorded)
    print_tables(console, summary_tables(recorded))
    for skip in result.skipped:  # what did not apply to a user's target, and why: never silently left out
        console.print(f"not run: {skip.line}", highlight=False, markup=False, soft_wrap=True)
    console.print(f"{len(result.records)} records in {out}/results.json; report {report}; "
                  f"{result.seconds:.0f} s", highlight=False)
    return 0
