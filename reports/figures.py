"""PNG figures from result records (matplotlib's Agg canvas: no display, no global pyplot state)."""

from __future__ import annotations

import os
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend

from harness.fileio import atomic_path


def plain_text(legend: Legend) -> Legend:
    """``legend`` with its labels drawn as they are: names from recorded files are never TeX ("$\\frac$")."""
    for text in legend.get_texts():
        text.set_parse_math(False)
    return legend


def pgd_sweep_curves(records: list[dict[str, Any]], metric: str = "pixel_accuracy"
                     ) -> dict[str, list[tuple[int, float]]]:
    """Per model, (PGD iterations, ``metric`` in %) sorted by iterations; the clean record counts as 0."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        if record["attack"] == "none":
            steps = 0
        elif record["attack"] == "pgd":
            steps = int(record["params"]["steps"])
        else:
            continue
        curves.setdefault(record["model"], []).append((steps, 100 * record[metric]))
    return {model: sorted(points) for model, points in curves.items()}


def plot_pgd_sweep(records: list[dict[str, Any]], path: str | os.PathLike, title: str) -> None:
    """The paper's Figure 3: pixel accuracy (%) against PGD iterations, one line per model; atomic write."""
    figure = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for model, points in pgd_sweep_curves(records).items():
        xs, ys = zip(*points, strict=True)
        axes.plot(xs, ys, marker="o", label=model)
    axes.set_xlabel("PGD iterations (0 = clean)")
    axes.set_ylabel("pixel accuracy (%)")
    axes.set_title(title, parse_math=False)
    axes.grid(True, alpha=0.3)
    plain_text(axes.legend())
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def plot_square_curves(curves: dict[str, list[dict[str, Any]]], path: str | os.PathLike, title: str,
                       clean_accuracy: float | None = None) -> None:
    """The paper's Figure 4: Square Attack pixel accuracy (%) and mean loss against queries per image.

    ``curves``: label (e.g. the initialisation) -> points ``{"queries", "pixel_accuracy" (fraction),
    "mean_loss"}``; ``clean_accuracy`` (fraction) is drawn as a dashed line. Atomic write.
    """
    figure = Figure(figsize=(10, 4), dpi=120)
    FigureCanvasAgg(figure)
    accuracy, loss = figure.subplots(1, 2)
    for label, points in curves.items():
        queries = [p["queries"] for p in points]
        accuracy.plot(queries, [100 * p["pixel_accuracy"] for p in points], label=label)
        loss.plot(queries, [p["mean_loss"] for p in points], label=label)
    if clean_accuracy is not None:
        accuracy.axhline(100 * clean_accuracy, color="grey", linestyle="--", label="clean")
    for axes, ylabel in ((accuracy, "pixel accuracy (%)"), (loss, "mean loss (oracle)")):
        axes.set_xlabel("queries per image")
        axes.set_ylabel(ylabel)
        axes.grid(True, alpha=0.3)
        plain_text(axes.legend())
    figure.suptitle(title, parse_math=False)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
