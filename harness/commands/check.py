"""``check``: the CI regression gate. Compare a results.json against a baseline results.json.

Exit codes: 0 every record within tolerance (improvements are fine); 1 a record's pixel accuracy
or mean IoU dropped by more than the tolerance; 2 the results or baseline are missing, corrupt, of
another schema, hold duplicate keys, or do not cover the same records (fail closed; records new in
the results pass only with ``--allow-new``). ``--update-baseline`` prints the comparison, then
writes the results file as the new baseline atomically and exits 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from harness.commands.common import float_in
from harness.errors import HarnessError
from harness.fileio import check_outputs, write_bytes_atomic
from harness.limits import MAX_POINTS
from reports.regression import DEFAULT_TOLERANCE, compare, delta_table
from reports.results import read_results
from reports.run_dir import read_suite_check
from reports.target_changes import target_changes

HELP = "regression gate: compare results.json with a baseline; exit 0 pass, 1 regression, 2 bad input"

# At least 160 columns (CI logs and files default to 80): squeezed, rich would cut the numbers to "…".
console = Console()
console.width = max(console.width, 160)


# An argparse type: a finite number of percentage points in [0, 100].
points = float_in(0, MAX_POINTS)


def attack_points(text: str) -> tuple[str, float]:
    """An argparse type: ``ATTACK=POINTS``."""
    attack, sep, value = text.partition("=")
    if not sep or not attack:
        raise argparse.ArgumentTypeError(f"{text!r} is not ATTACK=POINTS (e.g. square=2)")
    return attack, points(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", required=True, metavar="FILE", help="the baseline results.json")
    parser.add_argument("--results", default="results.json", metavar="FILE",
                        help="the results.json to check (default: results.json in the current directory)")
    parser.add_argument("--tolerance", type=points, metavar="POINTS",
                        help=f"allowed drop of pixel accuracy and of mean IoU, in percentage points (default: the "
                             f"[check] tolerance of the suite that wrote the results, else {DEFAULT_TOLERANCE:g})")
    parser.add_argument("--attack-tolerance", type=attack_points, action="append", default=[],
                        metavar="ATTACK=POINTS",
                        help="tolerance for the records of one attack (repeatable; clean records are 'none'); "
                             "added to the suite's [check] attack_tolerance")
    parser.add_argument("--allow-new", action="store_true",
                        help="records in the results that the baseline lacks are shown, not an error")
    parser.add_argument("--update-baseline", action="store_true",
                        help="after printing the comparison, write the results as the new baseline (exit 0)")


def run(args: argparse.Namespace) -> int:
    if args.update_baseline:
        check_outputs({"--baseline (written by --update-baseline)": args.baseline})
    results = read_results(args.results)
    baseline_path = Path(args.baseline)
    if args.update_baseline and not baseline_path.exists():
        compare(results, results, where=(f"results {args.results}", f"results {args.results}"))  # validate
        _say(f"no baseline at {baseline_path} yet: {len(results)} record(s) of {args.results} become the baseline")
        return _update(args.results, baseline_path)
    try:
        baseline = read_results(baseline_path)
    except HarnessError as e:
        hint = " (remove it to start a new baseline with --update-baseline)" if args.update_baseline else ""
        raise HarnessError(f"baseline: {e}{hint}") from None
    tolerance, per_attack = _tolerances(args)
    comparison = compare(baseline, results, tolerance, per_attack,
                         where=(f"baseline {baseline_path}", f"results {args.results}"))
    console.print(delta_table(comparison, f"{args.results} against {baseline_path} (values in %; "
                                          f"tolerance {tolerance:g} pt)"))
    for note in target_changes(baseline, results):  # a user's changed model file is gated, and said so
        _say(note)
    code, verdict = comparison.outcome(args.allow_new)
    if args.update_baseline:
        _say(verdict)
        return _update(args.results, baseline_path)
    if code == 2:
        raise HarnessError(verdict)
    _say(verdict)
    return code


def _tolerances(args: argparse.Namespace) -> tuple[float, dict[str, float]]:
    """The command line's tolerances over those of the suite run that wrote the results (``suite.json`` beside
    ``results.json``, its suite's ``[check]``), over the defaults."""
    suite_check = read_suite_check(Path(args.results).parent / "suite.json")
    tolerance = args.tolerance if args.tolerance is not None else suite_check.tolerance
    return tolerance, {**suite_check.attack_tolerance, **dict(args.attack_tolerance)}


def _say(line: str) -> None:
    """One unwrapped line, printed as is (no rich markup)."""
    console.print(line, soft_wrap=True, markup=False, highlight=False)


def _update(results: str, baseline: Path) -> int:
    """Copy the results file, byte for byte, onto ``baseline`` (temp file + rename)."""
    write_bytes_atomic(baseline, Path(results).read_bytes())
    _say(f"wrote {baseline} (the new baseline)")
    return 0
