"""The regression check: compare the records of a run against a baseline run. Pure; runs nothing.

Contract (DESIGN.md, "Results"):
- A record is identified by its key: ``model, engine, precision, attack, params, n_images`` plus
  ``size``, ``source_model`` and ``source_engine`` when the record has them. ``params`` is keyed by
  its canonical JSON (sorted keys, integral floats written as integers, so ``8.0`` and ``8`` match).
  ``n_images`` is part of the key because an attack run writes the clean record of *its* images:
  clean records of the same model on 100 and on 20 images are two measurements, not duplicates.
  ``source_model``/``source_engine`` tell two transfer records apart that differ only by source.
- Compared metrics: pixel accuracy and mean IoU, in percentage points (records hold fractions).
  A record regresses when either metric drops by more than its tolerance (default
  ``DEFAULT_TOLERANCE`` points; per-attack overrides). Improvements never fail; they are shown.
- Inputs that cannot be compared are a ``HarnessError`` (exit code 2): two records of one file with
  the same key, an empty baseline, a record off the results schema (``reports.results.validate_record``:
  e.g. a metric that is not a finite number in [0, 1], a ``params`` that is not an object of scalars).
  A baseline record missing from the results, and a results record absent from the baseline ("new"),
  are reported by ``compare`` and turned into exit code 2 by ``outcome`` (new records only unless
  ``allow_new``): a record the gate does not cover fails closed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from harness.errors import CHECK_FAILED, USAGE_ERROR, HarnessError
from reports.results import validate_record
from reports.tables import ReadableTable

MAX_TABLE_ROWS = 500  # rows of the comparison table printed by check
DEFAULT_TOLERANCE = 1.0
"""Points (of percent) a metric may drop before the check fails."""

METRICS = (("pixel_accuracy", "acc"), ("mean_iou", "mIoU"))  # (record field, column name)
KEY_FIELDS = ("model", "engine", "precision", "attack", "params", "n_images")
OPTIONAL_KEY_FIELDS = ("size", "source_model", "source_engine")
_EPS = 1e-9  # float slack: a drop of exactly the tolerance passes

# Row statuses, in the order they are listed.
REGRESSION, MISSING, NEW, IMPROVED, OK = "REGRESSION", "MISSING", "NEW", "improved", "ok"
_ORDER = {REGRESSION: 0, MISSING: 1, NEW: 2, IMPROVED: 3, OK: 4}

RecordKey = tuple[str, ...]


def _canonical(value: Any) -> Any:
    """``value`` with integral floats as ints, so JSON of ``{"eps": 8.0}`` equals that of ``{"eps": 8}``."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def canonical_params(params: Any) -> str:
    """The canonical JSON of a record's ``params`` (an object); anything else is a HarnessError."""
    if not isinstance(params, dict):
        raise HarnessError(f"params must be a JSON object, got {json.dumps(params)}")
    return json.dumps(_canonical(params), sort_keys=True, separators=(",", ":"))


def record_key(record: Mapping[str, Any]) -> RecordKey:
    """The identity of a record: KEY_FIELDS, then OPTIONAL_KEY_FIELDS ("" when absent), as strings."""
    key = [canonical_params(record["params"]) if f == "params" else str(record[f]) for f in KEY_FIELDS]
    key += ["" if record.get(f) is None else str(record[f]) for f in OPTIONAL_KEY_FIELDS]
    return tuple(key)


def key_fields(key: RecordKey) -> dict[str, str]:
    """A key as ``{field: value}`` over KEY_FIELDS + OPTIONAL_KEY_FIELDS (params as canonical JSON)."""
    return dict(zip(KEY_FIELDS + OPTIONAL_KEY_FIELDS, key, strict=True))


def key_label(key: RecordKey) -> str:
    """A short human name of a key: ``fcn8s-vgg16 reduced torch fp32 pgd {eps=8,steps=10} n=20``."""
    fields = key_fields(key)
    params = json.loads(fields["params"])
    label = " ".join(v for v in (fields["model"], fields["size"], fields["engine"], fields["precision"],
                                 fields["attack"]) if v)
    if params:
        label += " {" + ",".join(f"{k}={_short(v)}" for k, v in params.items()) + "}"
    label += f" n={fields['n_images']}"
    if fields["source_model"] or fields["source_engine"]:
        label += f" from {fields['source_model'] or '?'}/{fields['source_engine'] or '?'}"
    return label


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def index_records(records: list[dict[str, Any]], where: str) -> dict[RecordKey, dict[str, Any]]:
    """Records by key, in file order. A record off the schema (reports.results.validate_record) or a duplicate
    key is a HarnessError.

    ``where`` names the file in messages (e.g. ``"baseline baseline.json"``).
    """
    index: dict[RecordKey, dict[str, Any]] = {}
    for i, record in enumerate(records):
        key = record_key(validate_record(record, f"{where}: record {i}"))
        if key in index:
            raise HarnessError(f"{where}: two records have the key {key_label(key)}; keys must be unique "
                               "(model, engine, precision, attack, params, n_images, size, source)")
        index[key] = record
    return index


@dataclass(frozen=True)
class Row:
    """One line of the comparison. Values are in percent; ``None`` where a side is absent."""

    key: RecordKey
    status: str
    tolerance: float
    baseline: dict[str, float] | None
    current: dict[str, float] | None

    @property
    def label(self) -> str:
        return key_label(self.key)

    def delta(self, metric: str) -> float | None:
        """current - baseline in points, or None when either side is absent."""
        if self.baseline is None or self.current is None:
            return None
        return self.current[metric] - self.baseline[metric]


@dataclass(frozen=True)
class Comparison:
    """Every baseline and results record, matched by key; rows sorted worst first."""

    rows: list[Row]
    tolerance: float

    def with_status(self, status: str) -> list[Row]:
        return [r for r in self.rows if r.status == status]

    def outcome(self, allow_new: bool = False) -> tuple[int, str]:
        """The exit code and a one-line verdict.

        2 when a baseline record is missing from the results, or a results record is new and
        ``allow_new`` is false (input mismatch, checked first: the gate fails closed); 1 on a
        regression; 0 otherwise.
        """
        regressed, missing, new = (self.with_status(s) for s in (REGRESSION, MISSING, NEW))
        improved = self.with_status(IMPROVED)
        compared = len(self.rows) - len(missing) - len(new)
        if missing or (new and not allow_new):
            parts = []
            if missing:
                parts.append(f"{len(missing)} baseline record(s) missing from the results "
                             f"(first: {missing[0].label})")
            if new and not allow_new:
                parts.append(f"{len(new)} record(s) not in the baseline (first: {new[0].label}; "
                             "--allow-new accepts them, --update-baseline adopts them)")
            if regressed:
                parts.append(f"and {len(regressed)} regression(s)")
            return USAGE_ERROR, "results do not cover the baseline: " + "; ".join(parts)
        if regressed:
            return CHECK_FAILED, (f"check FAILED: {len(regressed)} of {compared} record(s) dropped more than "
                                  f"the tolerance (worst: {regressed[0].label})")
        extra = [f"{len(improved)} improved"] if improved else []
        if new:
            extra.append(f"{len(new)} new, not checked")
        return 0, (f"check passed: {compared} record(s) within {_points(self.tolerance)} point(s) of the "
                   "baseline" + (f" ({', '.join(extra)})" if extra else ""))


def _points(value: float) -> str:
    return f"{value:g}"


def _percent(record: Mapping[str, Any]) -> dict[str, float]:
    return {name: 100 * float(record[name]) for name, _ in METRICS}


def compare(baseline: list[dict[str, Any]], results: list[dict[str, Any]], tolerance: float = DEFAULT_TOLERANCE,
            attack_tolerances: Mapping[str, float] | None = None,
            where: tuple[str, str] = ("baseline", "results")) -> Comparison:
    """Match ``results`` to ``baseline`` by key and classify each record.

    ``tolerance`` (points) applies to every record; ``attack_tolerances`` overrides it per attack
    name (``{"square": 2.0}``; the clean records have attack ``"none"``). A record is REGRESSION
    when pixel accuracy or mean IoU dropped by more than its tolerance, ``improved`` when neither
    dropped too far and one rose by more than it, else ``ok``; MISSING/NEW when one side lacks it.
    Raises HarnessError for inputs that cannot be compared (see the module docstring).
    """
    for value in (tolerance, *(attack_tolerances or {}).values()):
        if not math.isfinite(value) or value < 0:
            raise HarnessError(f"a tolerance must be a finite number of points >= 0, got {value}")
    if not baseline:
        raise HarnessError(f"{where[0]} has no records; a gate that checks nothing cannot pass")
    base, current = index_records(baseline, where[0]), index_records(results, where[1])
    rows = []
    for key in list(base) + [k for k in current if k not in base]:
        b, c = base.get(key), current.get(key)
        attack = (b or c or {})["attack"]
        tol = float((attack_tolerances or {}).get(attack, tolerance))
        row_b, row_c = (_percent(b) if b else None), (_percent(c) if c else None)
        if row_c is None:
            status = MISSING
        elif row_b is None:
            status = NEW
        else:
            deltas = [row_c[m] - row_b[m] for m, _ in METRICS]
            if any(d < -tol - _EPS for d in deltas):
                status = REGRESSION
            elif any(d > tol + _EPS for d in deltas):
                status = IMPROVED
            else:
                status = OK
        rows.append(Row(key, status, tol, row_b, row_c))
    rows.sort(key=lambda r: (_ORDER[r.status], min((r.delta(m) or 0.0) for m, _ in METRICS)))
    return Comparison(rows, float(tolerance))


_STYLE = {REGRESSION: "bold red", MISSING: "bold red", NEW: "yellow", IMPROVED: "green", OK: ""}


def _attack_cell(fields: dict[str, str]) -> str:
    params = json.loads(fields["params"])
    return " ".join([fields["attack"], *(f"{k}={_short(v)}" for k, v in params.items())])


def delta_table(comparison: Comparison, title: str = "regression check (values in %)",
                max_rows: int = MAX_TABLE_ROWS) -> Table:
    """One row per record, worst first: status, the key, then baseline / now / delta of each metric.

    A delta is red when it drops by more than the row's tolerance, green when it rises by more.
    The size and source columns appear only when some record has them. Cells are plain text
    (never rich markup), so any params value prints as it is. At most ``max_rows`` rows, the worst: a log
    of thousands of rows helps no one and takes minutes to render; the title says how many are left out
    (the verdict line counts every record).
    """
    rows = comparison.rows[:max_rows]
    if len(comparison.rows) > max_rows:
        left = comparison.rows[max_rows:]
        statuses = [r.status for r in left]
        counts = ", ".join(f"{statuses.count(s)} {s}" for s in _ORDER if s in statuses)
        title += f"; the worst {max_rows} of {len(comparison.rows)} records, {len(left)} not shown ({counts})"
    comparison = Comparison(rows, comparison.tolerance)
    fields = [key_fields(row.key) for row in comparison.rows]
    show_size = any(f["size"] for f in fields)
    show_source = any(f["source_model"] or f["source_engine"] for f in fields)
    table = ReadableTable(title=title, box=box.SIMPLE_HEAD, key_columns=5 + show_size + show_source)
    table.add_column("status", no_wrap=True)
    table.add_column("model", no_wrap=True)
    if show_size:
        table.add_column("size", no_wrap=True)
    table.add_column("engine", no_wrap=True)
    table.add_column("attack", overflow="fold")
    if show_source:
        table.add_column("source", no_wrap=True)
    table.add_column("n", justify="right", no_wrap=True)
    for _, name in METRICS:
        for part in ("base", "now", "Δ"):
            table.add_column(f"{name} {part}", justify="right", no_wrap=True)
    for row, f in zip(comparison.rows, fields, strict=True):
        cells: list[Text] = [Text(row.status, style=_STYLE[row.status]), Text(f["model"])]
        if show_size:
            cells.append(Text(f["size"]))
        cells += [Text(f"{f['engine']} {f['precision']}"), Text(_attack_cell(f))]
        if show_source:
            source = f"{f['source_model']}/{f['source_engine']}" if f["source_model"] or f["source_engine"] else ""
            cells.append(Text(source))
        cells.append(Text(f["n_images"]))
        for metric, _ in METRICS:
            delta = row.delta(metric)
            style = ""
            if delta is not None and delta < -row.tolerance - _EPS:
                style = "bold red"
            elif delta is not None and delta > row.tolerance + _EPS:
                style = "green"
            cells += [Text("-" if row.baseline is None else f"{row.baseline[metric]:.2f}"),
                      Text("-" if row.current is None else f"{row.current[metric]:.2f}"),
                      Text("-" if delta is None else f"{delta:+.2f}", style=style)]
        table.add_row(*cells)
    return table
