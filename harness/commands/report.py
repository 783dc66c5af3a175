"""``report``: re-render the tables and the report of a saved suite run, from its recorded results only."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.suite import console
from harness.fileio import check_outputs
from reports.suite_report import load_run, print_tables, render_report, summary_tables

HELP = "re-render the report (tables, figures) of a saved suite run directory; needs no model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by python -m harness suite --out")


def run(args: argparse.Namespace) -> int:
    recorded = load_run(args.run_dir)
    report_dir = Path(args.run_dir) / "report"
    check_outputs({"RUN_DIR (report/report.md)": report_dir / "report.md"}, {"RUN_DIR (report/)": report_dir})
    report = render_report(recorded)
    print_tables(console, summary_tables(recorded))
    console.print(f"wrote {report}", highlight=False)
    return 0
