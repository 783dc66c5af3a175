"""Rich console tables of scores and result records. Values are shown in %."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

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


def percent(fraction: float | None) -> str:
    """A fraction in [0, 1] as a table cell in % with two decimals; "-" for a missing value."""
    return "-" if fraction is None else f"{100 * fraction:.2f}"


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
        table.add_row(model, *(percent(v) for v in values))
    return table


def transfer_table(title: str, records: list[dict[str, Any]], metric: str = "pixel_accuracy",
                   engine: str = "torch", precision: str = "fp32") -> Table:
    """The paper's Table 2 layout for one target engine/precision: rows = (source model, attack), columns =
    target models, ``metric`` in %; white-box cells (source = target) end in ``*``.

    Reads transfer records (with ``source_model``) of ``engine``/``precision``; the clean records of the same
    engine/precision, when present, form a first ``clean`` row. A missing cell shows "-".
    """
    selected = [r for r in records if r["engine"] == engine and r["precision"] == precision]
    targets = list(dict.fromkeys(r["model"] for r in selected))
    rows = list(dict.fromkeys((r["source_model"], attack_label(r)) for r in selected if r.get("source_model")))
    cells = {(r.get("source_model"), attack_label(r), r["model"]): r[metric] for r in selected}
    table = Table(title=title)
    table.add_column("source")
    table.add_column("attack")
    for target in targets:
        table.add_column(target, justify="right")
    if any(r["attack"] == "none" for r in selected):
        table.add_row("", "clean", *(percent(cells.get((None, "clean", t))) for t in targets))
        table.add_section()
    previous = None
    for source, attack in rows:
        values = [percent(cells.get((source, attack, t))) + ("*" if t == source else "") for t in targets]
        table.add_row(source if source != previous else "", attack, *values)
        previous = source
    return table


def deployment_gap_table(title: str, records: list[dict[str, Any]], metric: str = "pixel_accuracy",
                         reference: tuple[str, str] = ("torch", "fp32"), threshold: float = 1.0) -> Table:
    """For each model, ``metric`` in % on every engine/precision: clean, and under each attack crafted on the
    model itself (white-box records, ``source_model == model``). Columns = ``engine precision`` in record
    order; a cell more than ``threshold`` points away from the ``reference`` column of its row is highlighted
    and shows the difference.
    """
    own = [r for r in records if r["attack"] == "none" or r.get("source_model") == r["model"]]
    columns = list(dict.fromkeys((r["engine"], r["precision"]) for r in own))
    models = list(dict.fromkeys(r["model"] for r in own))
    cells = {(r["model"], attack_label(r), (r["engine"], r["precision"])): r[metric] for r in own}
    table = Table(title=title)
    table.add_column("model")
    table.add_column("input")
    for engine, precision in columns:
        table.add_column(f"{engine} {precision}", justify="right")
    for i, model in enumerate(models):
        if i:
            table.add_section()
        labels = list(dict.fromkeys(attack_label(r) for r in own if r["model"] == model))
        for j, label in enumerate(labels):
            ref = cells.get((model, label, reference))
            row: list[str | Text] = []
            for column in columns:
                value = cells.get((model, label, column))
                if value is not None and ref is not None and column != reference \
                        and abs(100 * (value - ref)) > threshold:
                    row.append(Text(f"{percent(value)} ({100 * (value - ref):+.1f})", style="bold yellow"))
                else:
                    row.append(percent(value))
            table.add_row(model if j == 0 else "", label, *row)
    return table
