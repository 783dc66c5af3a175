"""Black-box attack strength (issue 14): the paper's Square Attack against the harness's stronger black-box attacks.

On the same images through the same ONNX Runtime engine of each model: the paper's Square Attack (stripes,
cross-entropy oracle, the reference p schedule), the Square Attack with the masked oracles (``mce``,
``mmargin``) and the ``scaled`` p schedule, with the paper's rgb squares and with grey ones, from stripes
and from a pixel checkerboard, and the hard-label attack (from stripes, the checkerboard, or the better of
both), which reads class maps only (``engine.predict``). Per attack: clean and adversarial pixel accuracy,
the drop in points, the drop's ratio to the paper's Square Attack's, and queries per second.

Acceptance (issue 14, 8 images, eps 8/255, 1000 queries, fcn-resnet50 and fcn8s-vgg16 on ORT): the best
masked Square Attack drops accuracy at least 2x as much as the paper's (at least 1.5x to resolve); the
hard-label attack drops it at least as much as the paper's.

The models are the trained checkpoints the commands use (``python -m harness train --model NAME``);
``--checkpoint NAME=FILE`` takes another one.

    .venv/bin/python benchmarks/attack_strength_blackbox.py [--models fcn-resnet50 fcn8s-vgg16] [--n-images 8]
        [--queries 1000] [--eps 8] [--seed 0] [--checkpoint NAME=FILE] [--json attack_strength_blackbox.json]
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from engines.base import Engine
from engines.factory import create_engine
from harness.attacks.hard_label import HardLabelAttack, HardLabelConfig
from harness.attacks.square import SquareAttack, SquareConfig
from harness.commands.common import load_model
from harness.data import load_data
from harness.errors import HarnessError
from harness.fileio import check_outputs, write_json_atomic
from harness.models import MODELS
from harness.threads import set_threads
from reports.results import environment

PAPER = "square (paper)"
STARTS = ("vertical", "checker", "auto")  # the paper's default stripes, the checkerboard, the better of both
TARGET_RATIO, MIN_RATIO = 2.0, 1.5


@dataclass(frozen=True)
class Entry:
    """One attack of the table: its label and its configuration (Square or hard-label)."""

    label: str
    config: SquareConfig | HardLabelConfig


def entries(eps: float, queries: int, seed: int) -> list[Entry]:
    square = [Entry(PAPER, SquareConfig(eps=eps, queries=queries, seed=seed))]
    for colour in ("rgb", "grey"):
        for init in ("vertical", "checker"):
            for loss in ("mce", "mmargin"):
                square.append(Entry(f"square {loss} scaled {colour} {init}", SquareConfig(
                    eps=eps, queries=queries, seed=seed, loss=loss, p_schedule="scaled", init=init, colour=colour)))
    hard = [Entry(f"hardlabel {colour} {init}", HardLabelConfig(eps=eps, queries=queries, seed=seed, init=init,
                                                                colour=colour))
            for colour in ("rgb", "grey") for init in STARTS]
    return square + hard


class ClassMapsOnly:
    """The engine as a hard-label attacker sees it: ``predict`` only; asking for scores is an error."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._engine.predict(images)


def measure(engine: Engine, entry: Entry, images: np.ndarray, labels: np.ndarray, clean: float) -> dict[str, Any]:
    if isinstance(entry.config, HardLabelConfig):
        state = HardLabelAttack(entry.config).run(ClassMapsOnly(engine), images, labels)
    else:
        state = SquareAttack(entry.config).run(engine, images, labels)
    spent = int(state.queries.sum())
    return {"attack": entry.label, "params": entry.config.as_dict(), "clean": clean,
            "adversarial": state.pixel_accuracy, "drop": clean - state.pixel_accuracy, "queries": spent,
            "queries_per_image_max": int(state.queries.max()), "seconds": state.seconds,
            "queries_per_s": spent / max(state.seconds, 1e-9)}


def run_model(name: str, checkpoint: str | None, n_images: int, queries: int, eps: float, seed: int,
              console: Console) -> list[dict[str, Any]]:
    data = load_data("synthetic", "val", None, None, 0, n_images)
    train_args = types.SimpleNamespace(model=name, size="reduced", checkpoint=checkpoint, weights=None,
                                       data="synthetic", data_root=None, image_size=None, data_seed=0)
    model, source = load_model(train_args, data)
    images, labels = (np.ascontiguousarray(t.numpy()) for t in data.tensors(slice(None)))
    rows = []
    with create_engine("ort", model, source, data) as engine:
        clean = float((engine.predict(images) == labels).sum() / (labels != 255).sum())
        for entry in entries(eps, queries, seed):
            start = time.perf_counter()
            row = {"model": name, **measure(engine, entry, images, labels, clean)}
            rows.append(row)
            console.print(f"{name}: {entry.label}: {100 * row['adversarial']:.2f} % "
                          f"({time.perf_counter() - start:.0f} s)")
    paper = next(r for r in rows if r["attack"] == PAPER)
    for row in rows:
        row["drop_ratio"] = row["drop"] / paper["drop"] if paper["drop"] > 0 else None
    return rows


def verdicts(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model: the best masked Square Attack's drop ratio and the hard-label attack's against the paper's."""
    out = {}
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        paper = next(r for r in mine if r["attack"] == PAPER)
        square = max((r for r in mine if r["attack"].startswith("square ") and r["attack"] != PAPER),
                     key=lambda r: r["drop"])
        hard = max((r for r in mine if r["attack"].startswith("hardlabel")), key=lambda r: r["drop"])
        ratio = square["drop_ratio"] or 0.0
        out[name] = {"best_square": square["attack"], "best_square_ratio": ratio,
                     "square_target_met": ratio >= TARGET_RATIO, "square_minimum_met": ratio >= MIN_RATIO,
                     "best_hardlabel": hard["attack"], "hardlabel_drop": hard["drop"], "paper_drop": paper["drop"],
                     "hardlabel_matches_paper": hard["drop"] >= paper["drop"]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["fcn-resnet50", "fcn8s-vgg16"], choices=list(MODELS))
    parser.add_argument("--n-images", type=int, default=8)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=FILE",
                        help="the checkpoint of model NAME (default: the one train writes)")
    parser.add_argument("--json", default="attack_strength_blackbox.json")
    args = parser.parse_args(argv)
    console = Console(width=150)
    try:
        if not 1 <= args.n_images <= 200 or not 1 <= args.queries <= 100_000:
            raise HarnessError("--n-images must be in 1-200 (the built-in val split) and --queries in 1-100000")
        checkpoints = dict(item.split("=", 1) for item in args.checkpoint if "=" in item)
        if len(checkpoints) != len(args.checkpoint) or not set(checkpoints) <= set(args.models):
            raise HarnessError("--checkpoint takes NAME=FILE with NAME one of --models")
        check_outputs({"--json": args.json})
        set_threads()
        rows = []
        for name in args.models:
            rows += run_model(name, checkpoints.get(name), args.n_images, args.queries, args.eps, args.seed, console)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    table = Table(title=f"Black-box attack strength: {args.n_images} images, eps {args.eps:g}/255, {args.queries} "
                        "queries per image, ONNX Runtime (values in %)")
    for column in ("model", "attack", "clean", "adversarial", "drop", "drop ratio vs paper's Square", "queries/s"):
        table.add_column(column, justify="left" if column in ("model", "attack") else "right")
    for r in rows:
        ratio = "-" if r["drop_ratio"] is None else f"{r['drop_ratio']:.2f}x"
        table.add_row(r["model"], r["attack"], f"{100 * r['clean']:.2f}", f"{100 * r['adversarial']:.2f}",
                      f"{100 * r['drop']:.2f}", ratio, f"{r['queries_per_s']:.0f}")
    console.print(table)
    result = verdicts(rows)
    for name, v in result.items():
        console.print(f"{name}: best masked Square ({v['best_square']}) {v['best_square_ratio']:.2f}x the paper's "
                      f"drop (target {TARGET_RATIO:g}x: {'met' if v['square_target_met'] else 'not met'}; minimum "
                      f"{MIN_RATIO:g}x: {'met' if v['square_minimum_met'] else 'not met'}); {v['best_hardlabel']} "
                      f"drop {100 * v['hardlabel_drop']:.2f} vs the paper's Square {100 * v['paper_drop']:.2f} "
                      f"({'matches' if v['hardlabel_matches_paper'] else 'below'})")
    write_json_atomic(args.json, {"settings": vars(args), "environment": environment(), "rows": rows,
                                  "verdicts": result})
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
