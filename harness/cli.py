"""``python -m harness COMMAND``: one module per command under harness/commands/.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int`` (the exit code). HarnessError becomes one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback
from typing import TextIO

from harness import __version__, distributed
from harness.errors import CHECK_FAILED, USAGE_ERROR, HarnessError, error_line
from harness.fileio import cache_dir, check_output_dir

# Order of the command list in --help.
COMMANDS = ["models", "inspect", "train", "eval", "export", "engines", "attack", "whitebox", "sweep", "blackbox",
            "transfer", "suite", "report", "check"]

# Commands that write nothing to the cache (models only lists its checkpoints).
CACHE_FREE = frozenset({"models", "inspect", "engines", "report", "check"})
# What the other commands write under the cache (harness.fileio.cache_dir()).
CACHE_SUBDIRS = ("data", "checkpoints", "artifacts", "square", "adversarial", "tensorrt")
INTERRUPTED = 130
_errors: TextIO | None = None  # where a rank other than 0 of a torchrun job says why it stopped (its stderr)


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
    """Run one command; the exit code. Every failure is one line on stderr: ``error: ...``, exit 2 (1 only
    for a check that ran and failed), 130 after Ctrl-C. Nothing escapes as a traceback: an OSError or any
    other unexpected exception is the last-resort line (fail closed: ``check`` never reads a crash as a
    regression); ``HARNESS_TRACEBACK=1`` prints the traceback before it."""
    for stream in (sys.stdout, sys.stderr):  # a path or name the terminal's encoding lacks is escaped, not fatal
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        return _main(argv)
    except KeyboardInterrupt:  # also while the command modules import torch
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except ImportError as e:  # build_parser imports every command module (and torch) before any command runs
        return _fail(e, f"the harness cannot start: {error_line(e)} (a broken or partial install; reinstall it "
                        "with pip install -e .)")


def _main(argv: list[str] | None) -> int:
    try:
        place = distributed.environment_world()
    except HarnessError as e:  # torchrun's variables set by hand, wrongly
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    if not place.main:  # under torchrun rank 0 alone prints: the others' output would repeat it N times
        global _errors
        _errors = sys.stderr  # except the one line that says why this rank stopped
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (notes and warnings: rank 0 says them)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed --help (0) or its one-line usage error (2)
        return int(e.code or 0)
    if args.command is None:
        parser.print_help()
        print(f"{parser.prog}: error: give a COMMAND (see --help)", file=sys.stderr)
        return USAGE_ERROR
    empty = _empty_option(parser, args)
    if empty is not None:  # e.g. --out "$DIR" with DIR unset: never read as "not given" (a default place)
        print(f"{parser.prog} {args.command}: error: argument {empty}: the value is empty (see --help)",
              file=sys.stderr)
        return USAGE_ERROR
    previous = os.environ.get("HARNESS_CACHE")
    if args.cache_dir:
        os.environ["HARNESS_CACHE"] = args.cache_dir
    try:
        if distributed.start().size > 1:
            signal.signal(signal.SIGTERM, _stopped_by_launcher)
        if args.command not in CACHE_FREE:
            _check_cache(args)
        return int(args.run(args) or 0)
    except HarnessError as e:
        # Every rank says what stopped it (one line each): a problem one rank alone meets is never lost.
        print(f"error: {_rank_prefix()}{_one_line(str(e))}", file=_errors or sys.stderr)
        return e.exit_code
    except OSError as e:
        return _fail(e, f"{os.fsdecode(e.filename)}: {e.strerror}" if e.filename and e.strerror
                     else f"{type(e).__name__}: {e}")
    except MemoryError as e:
        return _fail(e, "out of memory; use fewer images (--n-images), a smaller --batch-size or --image-size")
    except Exception as e:  # the net under every specific check; not a substitute for them
        return _fail(e, f"unexpected {type(e).__name__}: {error_line(e)} (a bug, or an input the harness "
                        f"does not check yet; HARNESS_TRACEBACK=1 shows the traceback)")
    finally:
        if distributed.job().size > 1:  # torchrun's SIGTERM once this rank is done (or has said why not): no traceback
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        distributed.stop()
        if args.cache_dir:  # in-process callers (the tests) keep their own cache
            if previous is None:
                os.environ.pop("HARNESS_CACHE", None)
            else:
                os.environ["HARNESS_CACHE"] = previous


def _empty_option(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """The name of the first option (or positional argument) given an empty string, or None."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in [*parser._actions, *commands.choices[args.command]._actions]:
        value = getattr(args, action.dest, None)
        if value == "" or (isinstance(value, list) and "" in value):
            return action.option_strings[0] if action.option_strings else str(action.metavar or action.dest)
    return None


def _check_cache(args: argparse.Namespace) -> None:
    """The cache can be written: checked before the work, like every output option."""
    option = "--cache-dir" if args.cache_dir else "HARNESS_CACHE" if os.environ.get("HARNESS_CACHE") else \
        "the cache directory"
    root = check_output_dir(cache_dir(), option)
    for sub in CACHE_SUBDIRS:
        if (root / sub).exists() and not (root / sub).is_dir():
            raise HarnessError(f"{option} {root}: {root / sub} is a file, not a directory; remove it")


def _fail(e: BaseException, message: str) -> int:
    stream = _errors or sys.stderr
    if os.environ.get("HARNESS_TRACEBACK"):
        traceback.print_exception(e, file=stream)
    print(f"error: {_rank_prefix()}{_one_line(message)}", file=stream)
    return USAGE_ERROR


def _rank_prefix() -> str:
    """``rank R: `` in a job of several processes, so a message says which one met it."""
    place = distributed.job()
    return f"rank {place.rank}: " if place.size > 1 else ""


def _stopped_by_launcher(signum: int, frame: object) -> None:
    """torchrun stops the other ranks with SIGTERM when one fails: a line and exit 1, not a silent death."""
    raise HarnessError(distributed.PEER_FAILED, exit_code=CHECK_FAILED)


def _one_line(message: str) -> str:
    """A message on one line, of bounded length (an exception's text can hold a whole array)."""
    line = " ".join(message.split())
    # Names read from files may hold terminal escapes or other control characters: shown, never obeyed.
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
    return line if len(line) <= 500 else line[:480] + " ..."
