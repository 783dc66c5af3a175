"""``inspect``: read a user's ONNX file or TensorRT plan, probe it, and guess the model card to start from."""

from __future__ import annotations

import argparse
import json
import os

from rich.markup import escape
from rich.table import Table

from harness.commands.common import console, image_size_arg
from harness.data.sizes import height_width
from harness.errors import HarnessError
from harness.fileio import check_outputs
from harness.targets.card import write_card
from harness.targets.inspect import GUESSED, SURE, UNKNOWN, Inspection, inspect_file, iter_rows
from harness.targets.onnx_io import metadata_keys, shown

HELP = "read an ONNX file or TensorRT plan, run one probe and guess its model card (sure / guessed / unknown)"
_STYLE = {SURE: "green", GUESSED: "yellow", UNKNOWN: "red"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="an ONNX file, or a TensorRT plan (.plan, .engine, .trt)")
    parser.add_argument("--card", metavar="OUT.toml",
                        help="write the guessed card here (every guessed or unknown line carries a comment)")
    parser.add_argument("--probe-size", type=image_size_arg, metavar="PX|HxW",
                        help="the probe image's size for a graph with a dynamic size (default 128x192)")


def run(args: argparse.Namespace) -> int:
    check_outputs({"--card": args.card})
    if args.card is not None and _same_file(args.card, args.file):
        raise HarnessError(f"--card {args.card} is FILE itself; give the card its own name (e.g. card.toml)")
    probe_size = height_width(args.probe_size) if args.probe_size is not None else None
    inspection = inspect_file(args.file, probe_size)
    _print(inspection)
    unknown = ", ".join(inspection.card.unknown)
    if args.card is not None:
        write_card(inspection.card, args.card, inspection.comments())
        console.print(f"card written to {escape(str(args.card))}: check every guessed line"
                      + (f", set {escape(unknown)}" if unknown else "") + f", then pass --card {escape(args.card)}",
                      highlight=False)
    else:
        console.print("write this card with --card card.toml, check it, then pass --card card.toml", highlight=False)
    return 0


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.exists(a) and os.path.samefile(a, b)
    except OSError:
        return False


def _print(inspection: Inspection) -> None:
    info = inspection.info
    summary = Table(title=f"{escape(str(inspection.path))} ({inspection.format})", show_header=True)
    for column in ("", "name", "dtype", "shape"):
        summary.add_column(column, overflow="fold")
    for role, tensors in (("input", info.inputs), ("output", info.outputs)):
        for t in tensors:
            summary.add_row(role, escape(t.name), t.dtype, escape(shown(t.shape)))
    console.print(summary)
    keys = metadata_keys(info)  # a foreign file's keys: control characters escaped, at most 20 shown
    console.print(f"opset {info.opset or '-'}, producer {escape(info.producer) or '-'}, metadata keys: {escape(keys)}",
                  highlight=False)
    if inspection.probe is not None:
        probe = inspection.probe
        parts = [f"{escape(o.name)} {o.dtype} {list(o.shape)} in [{o.low:.4g}, {o.high:.4g}]"
                 + ("" if o.finite else " (NaN/inf)") for o in probe.outputs]
        console.print(f"probe: one random image, fed as {probe.input_dtype} {list(probe.input_shape)} -> "
                      + "; ".join(parts), highlight=False)
    table = Table(title="Guessed model card")
    for column in ("field", "value", "", "why"):
        table.add_column(column, overflow="fold", no_wrap=column in ("field", ""))
    for name, value, mark, why in iter_rows(inspection):
        shown_value = json.dumps(value) if isinstance(value, str | list) else str(value)
        table.add_row(name, escape(shown_value), f"[{_STYLE[mark]}]{mark}[/]", escape(why))
    console.print(table)
    for note in inspection.notes:
        console.print(f"note: {escape(note)}", highlight=False)
