"""``models``: list the registry with sizes, parameter counts and trained checkpoints."""

from __future__ import annotations

import argparse

from harness.checkpoints import read_metadata
from harness.commands.common import console, int_in
from harness.data.base import MAX_CLASSES
from harness.errors import HarnessError
from harness.fileio import cache_dir
from harness.limits import MIN_CLASSES
from harness.models import MODELS, SIZES, build_model, count_parameters
from reports.tables import ReadableTable

HELP = "list the models, their sizes, parameter counts and trained checkpoints"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classes", type=int_in(MIN_CLASSES, MAX_CLASSES), default=7, metavar="K",
                        help=f"number of classes for the parameter count, {MIN_CLASSES}-{MAX_CLASSES} "
                             "(default 7, the built-in data)")


def _percent(value: float | None) -> str:
    return "?" if value is None else f"{100 * value:.1f}%"


def _trained() -> tuple[dict[tuple[str, str], list[str]], list[str]]:
    """The cached checkpoints by (model, size), and one line for each cached file that cannot be read."""
    found: dict[tuple[str, str], list[str]] = {}
    unreadable: list[str] = []
    for path in sorted((cache_dir() / "checkpoints").glob("*.safetensors")):
        try:
            meta = read_metadata(path)  # the schema is validated there, so the fields below have their types
        except HarnessError as e:
            unreadable.append(str(e))
            continue
        metrics = meta.get("val_metrics", {})
        miou = metrics.get("mean_iou")
        found.setdefault((meta["model"], meta["size"]), []).append(
            f"{meta.get('data', {}).get('name', '?')}: {_percent(metrics.get('pixel_accuracy'))} "
            f"/ mIoU {'?' if miou is None else f'{miou:.3f}'}")
    return found, unreadable


def run(args: argparse.Namespace) -> int:
    trained, unreadable = _trained()
    table = ReadableTable(title="Models (input: RGB in [0, 1]; output: logits at input resolution)")
    for col in ("model", "size", "parameters", "description", "trained checkpoints (val pixel acc / mIoU)"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for name, spec in MODELS.items():
        for size in SIZES:
            params = count_parameters(build_model(name, args.classes, size))
            table.add_row(name, size, f"{params / 1e6:.2f} M", spec.description,
                          "\n".join(trained.get((name, size), [])) or "-")
    console.print(table)
    console.print(f"checkpoints: {cache_dir() / 'checkpoints'}")
    for line in unreadable:
        console.print(f"unreadable, not listed: {line}", highlight=False, markup=False, soft_wrap=True)
    return 0
