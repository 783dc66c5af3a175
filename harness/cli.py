"""``python -m harness COMMAND``: one module per command under harness/commands/.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int`` (the exit code). HarnessError becomes one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from harness import __version__
from harness.errors import USAGE_ERROR, HarnessError

# Order of the command list in --help.
COMMANDS = ["models", "train", "eval", "export", "engines", "attack", "whitebox", "sweep", "blackbox", "transfer",
            "suite", "report", "check"]


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error instead of the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m harness",
                     description="Deployment-robustness harness for semantic segmentation.")
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    parser.add_argument("--cache-dir", help="where data, checkpoints and artifacts are cached "
                        "(default: $HARNESS_CACHE or ~/.cache/harness)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"harness.commands.{name.replace('-', '_')}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed --help (0) or its one-line usage error (2)
        return int(e.code or 0)
    if args.command is None:
        parser.print_help()
        return USAGE_ERROR
    if args.cache_dir:
        os.environ["HARNESS_CACHE"] = args.cache_dir
    try:
        return int(args.run(args) or 0)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
