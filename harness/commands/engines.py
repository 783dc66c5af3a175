"""``engines``: which inference engines and devices are usable on this machine, and why not otherwise."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from engines.availability import GPU_INSTALL_HINT, availability, onnxruntime_packages
from engines.tensorrt_env import tensorrt_packages
from harness.commands.common import console

HELP = "list the inference engines (torch, ort, trt) usable on this machine, and why not otherwise"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    table = Table(title="Inference engines on this machine")
    for column in ("engine", "device", "usable", "precisions", "version", "why not"):
        table.add_column(column, no_wrap=column != "why not", overflow="fold")
    rows = availability()
    for a in rows:
        table.add_row(a.engine, a.device, "[green]yes[/]" if a.usable else "[red]no[/]", " ".join(a.precisions),
                      a.version, escape(a.reason))
    console.print(table)
    console.print(f"onnxruntime module from: {', '.join(onnxruntime_packages()) or 'no distribution metadata'}",
                  highlight=False)
    console.print(f"tensorrt packages: {', '.join(tensorrt_packages()) or 'none installed'}", highlight=False)
    if not all(a.usable for a in rows if a.device == "cuda"):
        console.print(f"GPU engines: see {GPU_INSTALL_HINT} (tensorrt, onnxruntime-gpu)", highlight=False)
    return 0
