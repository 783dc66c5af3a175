"""Rich console tables of scores and result records. Values are shown in %."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Column, Table
from rich.text import Text

from harness.errors import HarnessError
from harness.metrics import Scores
from reports import schema


class ReadableTable(Table):
    """A rich Table that never cuts a cell to "…", at any console width (80 columns, a CI log, a file).

    Its title comes first, on lines of its own (rich would wrap it to the table's width). A table wider than the
    console is printed as several tables, each with the first ``key_columns`` columns (the row labels) and as
    many of the other columns as fit; a part that still does not fit folds its cells onto more lines rather than
    truncating them. As a Table it is unchanged (columns, rows, title), so markdown_table reads it. Title,
    headers and cells given as strings are plain text, never rich markup (they hold names from recorded files).
    """

    def __init__(self, *headers: Any, key_columns: int = 1, **kwargs: Any) -> None:
        if isinstance(kwargs.get("title"), str):
            kwargs["title"] = Text(kwargs["title"])
        super().__init__(*headers, **kwargs)
        self.key_columns = key_columns

    def add_column(self, header: Any = "", *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().add_column(Text(header) if isinstance(header, str) else header, *args, **kwargs)

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().add_row(*(Text(r) if isinstance(r, str) else r for r in renderables), **kwargs)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.title:  # wrapped to the console's width, not to a narrow table's
            yield Text(str(self.title), style="bold")
        for part in self.parts(console, options):
            yield from Table.__rich_console__(part, console, options)

    def parts(self, console: Console, options: ConsoleOptions) -> list[Table]:
        """The untitled tables to print at ``options.max_width``: all columns when they fit, else column groups."""
        width = options.max_width
        if self._natural_width(console, options, self.columns) <= width:
            return [self._part(self.columns, fold=False)]
        keys, rest = self.columns[:self.key_columns], self.columns[self.key_columns:]
        groups: list[list[Column]] = [[]]
        for column in rest:
            if groups[-1] and self._natural_width(console, options, keys + groups[-1] + [column]) > width:
                groups.append([])
            groups[-1].append(column)
        return [self._part(keys + group, fold=self._natural_width(console, options, keys + group) > width)
                for group in groups]

    def _part(self, columns: list[Column], fold: bool) -> Table:
        part = copy.copy(self)
        part.title = None
        part.columns = [replace(c, _index=i, **({"overflow": "fold", "no_wrap": False} if fold else {}))
                        for i, c in enumerate(columns)]
        return part

    def _natural_width(self, console: Console, options: ConsoleOptions, columns: list[Column]) -> int:
        part = self._part(columns, fold=False)
        return Table.__rich_measure__(part, console, options.update_width(1 << 16)).maximum


def scores_table(title: str, class_names: list[str], rows: list[tuple[str, Scores]]) -> Table:
    """Scores in %, long rather than wide so that it reads at 80 columns: one column per (label, scores),
    rows pixel accuracy and mIoU, then one row of IoU per class ("-": the class is in none of the images)."""
    table = ReadableTable(title=title, key_columns=1)
    table.add_column("", overflow="fold")
    for label, _ in rows:
        table.add_column(label, justify="right", no_wrap=True)
    table.add_row("pixel accuracy", *(f"{100 * s.pixel_accuracy:.2f}" for _, s in rows))
    table.add_row("mIoU", *(f"{100 * s.mean_iou:.2f}" for _, s in rows), end_section=True)
    for i, name in enumerate(class_names):
        values = [s.per_class_iou[i] if i < len(s.per_class_iou) else None for _, s in rows]
        table.add_row(f"IoU {name}", *("-" if v is None else f"{100 * v:.1f}" for v in values))
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
    table = ReadableTable(title=title, key_columns=1)
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    for model in models:
        values = [cells.get((model, c)) for c in columns]
        table.add_row(model, *(percent(v) for v in values))
    return table


def worst_case_wins(record: dict[str, Any], where: str) -> dict[str, dict[str, int]] | None:
    """A worst-case record's win counts: ``{"pixel_accuracy": {member: images}, "mean_iou": {...}}``; None when the
    record has no ``worst_case`` field; a HarnessError naming ``where`` when the field is malformed."""
    if "worst_case" not in record:
        return None
    field = schema.mapping(record["worst_case"], f"{where}: worst_case")
    wins = {}
    for metric in ("pixel_accuracy", "mean_iou"):
        name = f"{where}: worst_case.{metric}_wins"
        counts = schema.values(schema.field(field, f"{metric}_wins", f"{where}: worst_case"), name,
                               lambda v, w: schema.integer(v, w, minimum=0))
        for member in counts:
            schema.string(member, f"{name}: an attack name")
        if sum(counts.values()) != record["n_images"]:
            raise HarnessError(f"{name} counts {sum(counts.values())} images, but the record has {record['n_images']}")
        wins[metric] = counts
    return wins


def wins_table(title: str, records: list[dict[str, Any]]) -> Table | None:
    """Per worst-case record (``sea``, ``A+B``): how many images each member won for pixel accuracy (the per-image
    minimum) and for mIoU (the greedy selection); None when no record is a worst case."""
    rows = [(r, worst_case_wins(r, f"record {r['model']} {attack_label(r)}")) for r in records]
    rows = [(r, w) for r, w in rows if w is not None]
    if not rows:
        return None
    table = ReadableTable(title=title, key_columns=2)
    for column in ("model", "attack", "member", "pixel acc wins", "mIoU wins"):
        table.add_column(column, justify="right" if column.endswith("wins") else "left")
    for i, (record, wins) in enumerate(rows):
        if i:
            table.add_section()
        members = list(dict.fromkeys([*wins["pixel_accuracy"], *wins["mean_iou"]]))
        for j, member in enumerate(members):
            table.add_row(record["model"] if j == 0 else "", attack_label(record) if j == 0 else "", member,
                          str(wins["pixel_accuracy"].get(member, 0)), str(wins["mean_iou"].get(member, 0)))
    return table


def sanity_table(title: str, warnings: list[Any]) -> Table | None:
    """The sanity warnings (harness.attacks.sanity.SanityWarning) as a table of (check, warning); None when none."""
    if not warnings:
        return None
    table = ReadableTable(title=title, key_columns=1)
    table.add_column("check")
    table.add_column("warning", overflow="fold")
    for warning in warnings:
        table.add_row(warning.kind, warning.message)
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
    table = ReadableTable(title=title, key_columns=2)
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
    table = ReadableTable(title=title, key_columns=2)
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


def attack_notes(title: str, records: list[dict[str, Any]]) -> list[Table]:
    """What follows a table of attack results: the worst cases' win counts and the sanity warnings
    (harness.attacks.sanity), each a table when there is something to show."""
    from harness.attacks.sanity import sanity_warnings  # the attacks package (and torch) only when used

    tables = [wins_table(f"{title}: worst cases, images won per attack (pixel accuracy: the per-image minimum, "
                         "mIoU: the greedy selection over images)", records),
              sanity_table(f"{title}: sanity checks, WARNING: results that a sound white-box evaluation never shows",
                           sanity_warnings(records))]
    return [t for t in tables if t is not None]
