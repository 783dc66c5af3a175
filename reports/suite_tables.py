"""The tables of a suite run, built from its recorded results only (the terminal and report.md show the same).

Records are selected by their ``experiments`` field (see harness/suite/runner.py): ``table1``, ``defended_eps``,
``sweep``, ``transfer``, ``square``. Every function returns rich Tables; an experiment that was not run gives none.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from harness.attacks.blackbox_attacks import BLACKBOX_ATTACKS
from harness.attacks.sanity import sanity_warnings
from reports.tables import (
    ReadableTable,
    attack_label,
    deployment_gap_table,
    percent,
    robustness_table,
    sanity_table,
    transfer_table,
    wins_table,
)


def of_experiment(records: list[dict[str, Any]], experiment: str) -> list[dict[str, Any]]:
    return [r for r in records if experiment in r.get("experiments", ())]


def _eps(records: list[dict[str, Any]]) -> str:
    values = sorted({r["params"]["eps"] for r in records if "eps" in r["params"]})
    return ", ".join(f"{v:g}" for v in values) or "-"


def _images(records: list[dict[str, Any]]) -> str:
    return ", ".join(str(n) for n in sorted({r["n_images"] for r in records}))


def table1(records: list[dict[str, Any]]) -> list[Table]:
    """The paper's Table 1: pixel accuracy and mIoU (%) of each model, clean and under each white-box column."""
    selected = of_experiment(records, "table1")
    if not selected:
        return []
    what = f"eps {_eps(selected)}/255, PyTorch fp32, {_images(selected)} images"
    wins = wins_table(f"Table 1: worst cases, images won per attack ({_images(selected)} images; pixel accuracy: the "
                      "per-image minimum, mIoU: the greedy selection over images)", selected)
    return [robustness_table(f"Table 1: white-box attacks, pixel accuracy (%), {what}", selected, "pixel_accuracy"),
            robustness_table(f"Table 1: white-box attacks, mIoU (%), {what}", selected, "mean_iou"),
            *([wins] if wins is not None else [])]


def defended_eps(records: list[dict[str, Any]], metric: str = "pixel_accuracy") -> list[Table]:
    """The defended model's accuracy over eps (SEA-style): one row per (model, attack), clean then one column per
    radius, ``metric`` in %; a missing cell shows "-"."""
    selected = of_experiment(records, "defended_eps")
    if not selected:
        return []
    radii = sorted({r["params"]["eps"] for r in selected if "eps" in r["params"]})
    clean = {r["model"]: r[metric] for r in selected if r["attack"] == "none"}
    cells: dict[tuple[str, str], dict[float, float]] = {}
    for r in selected:
        if r["attack"] != "none" and "eps" in r["params"]:
            cells.setdefault((r["model"], attack_label(r)), {})[r["params"]["eps"]] = r[metric]
    name = "pixel accuracy" if metric == "pixel_accuracy" else "mIoU"
    table = ReadableTable(key_columns=2, title=f"Defended model: {name} (%) over eps (PGD adversarial training), "
                                               f"PyTorch fp32, {_images(selected)} images")
    for column in ("model", "attack", "clean", *(f"eps {e:g}/255" for e in radii)):
        table.add_column(column, justify="left" if column in ("model", "attack") else "right")
    for (model, label), by_eps in cells.items():
        table.add_row(model, label, percent(clean.get(model)), *(percent(by_eps.get(e)) for e in radii))
    return [table]


def sanity(records: list[dict[str, Any]]) -> list[Table]:
    """The AutoAttack-style sanity warnings (harness.attacks.sanity) over every record of the run; none: no table."""
    table = sanity_table("Sanity checks: WARNING, results that a sound white-box evaluation never shows",
                         sanity_warnings(records))
    return [table] if table is not None else []


def sweep(records: list[dict[str, Any]]) -> list[Table]:
    """The numbers of the paper's Figure 3: pixel accuracy (%) after each number of PGD iterations."""
    selected = of_experiment(records, "sweep")
    if not selected:
        return []
    return [robustness_table(f"Figure 3: PGD with step eps/iterations, pixel accuracy (%), eps {_eps(selected)}/255, "
                             f"{_images(selected)} images", selected, "pixel_accuracy")]


def transfer(records: list[dict[str, Any]], metric: str = "pixel_accuracy") -> list[Table]:
    """The paper's Table 2 once per target engine/precision (torch fp32 first): rows (source, attack), columns
    target models; white-box cells end in *."""
    selected = of_experiment(records, "transfer")
    name = "pixel accuracy" if metric == "pixel_accuracy" else "mIoU"
    tables = []
    for engine, precision in dict.fromkeys((r["engine"], r["precision"]) for r in selected):
        tables.append(transfer_table(
            f"Table 2: transfer, {name} (%) of the targets on {engine} {precision}, examples crafted on the sources "
            f"in PyTorch fp32, eps {_eps(selected)}/255, {_images(selected)} images (* white-box)",
            selected, metric, engine, precision))
    return tables


def deployment_gap(records: list[dict[str, Any]]) -> list[Table]:
    """Each model clean and under its own white-box examples on every engine/precision; cells more than one point
    from torch fp32 are highlighted with the difference."""
    selected = of_experiment(records, "transfer")
    if not selected:
        return []
    return [deployment_gap_table(f"Deployment gap: pixel accuracy (%) per engine and precision, {_images(selected)} "
                                 "images (examples crafted on the model itself in PyTorch fp32; differences of more "
                                 "than 1 point from torch fp32 in brackets)", selected)]


def square(records: list[dict[str, Any]]) -> list[Table]:
    """The black-box attack ([square] attack: Square or hard-label) per model and initialisation: clean and
    adversarial scores, queries and time."""
    selected = of_experiment(records, "square")
    if not selected:
        return []
    clean = {(r["model"], r["engine"], r["precision"], r["n_images"]): r for r in selected if r["attack"] == "none"}
    what = "Square Attack (L-inf, black-box, logits only)" if all(r["attack"] != "hardlabel" for r in selected) \
        else "hard-label attack (L-inf, black-box, class maps only)"
    table = ReadableTable(key_columns=3, title=f"Figure 4: {what}, eps {_eps(selected)}/255, {_images(selected)} "
                                               "images")
    for column in ("model", "engine", "init", "queries / image", "clean acc", "adv acc", "clean mIoU", "adv mIoU",
                   "queries/s", "in engine"):
        table.add_column(column, justify="left" if column in ("model", "engine", "init") else "right")
    for r in selected:
        if r["attack"] not in BLACKBOX_ATTACKS:
            continue
        base = clean.get((r["model"], r["engine"], r["precision"], r["n_images"]), {})
        seconds = max(float(r["seconds"]), 1e-9)
        table.add_row(r["model"], f"{r['engine']} {r['precision']}", r["params"]["init"], str(r["params"]["queries"]),
                      percent(base.get("pixel_accuracy")), percent(r["pixel_accuracy"]), percent(base.get("mean_iou")),
                      percent(r["mean_iou"]),
                      f"{r['queries'] / seconds:.0f}", f"{100 * r.get('engine_seconds', 0.0) / seconds:.0f} %")
    return [table]


def models(suite: dict[str, Any]) -> list[Table]:
    """The models of the run: how each was trained, its validation scores, and its checkpoint."""
    entries = suite.get("models", {})
    if not entries:
        return []
    table = ReadableTable(key_columns=1,
                          title="Models (validation scores from training, on the whole validation split)")
    for column in ("model", "size", "training", "epochs", "lr", "train time", "val pixel acc", "val mIoU",
                   "checkpoint sha256"):
        table.add_column(column, justify="left" if column in ("model", "size", "training", "checkpoint sha256")
                         else "right")
    for name, m in entries.items():
        train, val = m.get("train") or {}, m.get("val_metrics") or {}
        adversarial = train.get("adversarial")
        training = "standard" if not adversarial else \
            f"PGD-{adversarial['steps']} adversarial, eps {adversarial['eps']:g}/255"
        table.add_row(name, str(m.get("size", "")), training, str(train.get("epochs", "-")), f"{train.get('lr', 0):g}",
                      f"{train.get('seconds', 0):.0f} s", f"{100 * val.get('pixel_accuracy', 0):.2f}",
                      f"{100 * val.get('mean_iou', 0):.2f}", str(m.get("sha256", ""))[:12])
    return [table]
