"""``models``: list the registry with sizes, parameter counts and trained checkpoints."""

from __future__ import annotations

import argparse

from rich.table import Table

from harness.checkpoints import read_metadata
from harness.commands.common import console
from harness.fileio import cache_dir
from harness.models import MODELS, SIZES, build_model, count_parameters

HELP = "list the models, their sizes, parameter counts and trained checkpoints"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classes", type=int, default=7,
                        help="number of classes for the parameter count (default 7, the built-in data)")


def _trained() -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted((cache_dir() / "checkpoints").glob("*.safetensors")):
        try:
            meta = read_metadata(path)
        except Exception:  # an unreadable file is simply not listed as trained
            continue
        metrics = meta.get("val_metrics", {})
        found.setdefault((meta["model"], meta["size"]), []).append(
            f"{meta.get('data', {}).get('name', '?')}: {100 * metrics.get('pixel_accuracy', float('nan')):.1f}% "
            f"/ mIoU {metrics.get('mean_iou', float('nan')):.3f}")
    return found


def run(args: argparse.Namespace) -> int:
    trained = _trained()
    table = Table(title="Models (input: RGB in [0, 1]; output: logits at input resolution)")
    for col in ("model", "size", "parameters", "description", "trained checkpoints (val pixel acc / mIoU)"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for name, spec in MODELS.items():
        for size in SIZES:
            params = count_parameters(build_model(name, args.classes, size))
            table.add_row(name, size, f"{params / 1e6:.2f} M", spec.description,
                          "\n".join(trained.get((name, size), [])) or "-")
    console.print(table)
    console.print(f"checkpoints: {cache_dir() / 'checkpoints'}")
    return 0
