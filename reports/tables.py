"""Rich console tables of scores and result records. Values are shown in %."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from harness.metrics import Scores


def scores_table(title: str, class_names: list[str], rows: list[tuple[str, Scores]]) -> Table:
    """One row per (label, scores): pixel accuracy and mIoU in %, then per-class IoU in %."""
    table = Table(title=title)
    table.add_column("")
    table.add_column("pixel acc", justify="right")
    table.add_column("mIoU", justify="right")
    for name in class_names:
        table.add_column(name, justify="right")
    for label, s in rows:
        per_class = ["-" if v is None else f"{100 * v:.1f}" for v in s.per_class_iou]
        table.add_row(label, f"{100 * s.pixel_accuracy:.2f}", f"{100 * s.mean_iou:.2f}", *per_class)
    return table


def attack_label(record: dict[str, Any]) -> str:
    """The column name of a record: ``clean``, ``fgsm``, ``mifgsm-20``, ``pgd-100``, ..."""
    if record["attack"] == "none":
        return "clean"
    steps = record["params"].get("steps")
    return record["attack"] if steps is None or record["attack"] == "fgsm" else f"{record['attack']}-{steps}"


def robustness_table(title: str, records: list[dict[str, Any]], metric: str = "pixel_accuracy") -> Table:
    """The paper's Table 1 layout: one row per model, one column per attack, ``metric`` in %.

    ``metric`` is a record field (``pixel_accuracy`` or ``mean_iou``); a missing cell shows "-".
    """
    models: list[str] = []
    columns: list[str] = []
    cells: dict[tuple[str, str], float] = {}
    for record in records:
        model, column = record["model"], attack_label(record)
        if model not in models:
            models.append(model)
        if column not in columns:
            columns.append(column)
        cells[model, column] = record[metric]
    table = Table(title=title)
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    for model in models:
        values = [cells.get((model, c)) for c in columns]
        table.add_row(model, *("-" if v is None else f"{100 * v:.2f}" for v in values))
    return table
