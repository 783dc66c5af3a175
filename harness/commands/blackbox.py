"""``blackbox``: the Square Attack against a deployed engine (ort, trt, torch) of a trained model.

The attack sees only the engine: images in, logits out. The command evaluates the same images
clean through the same engine, shows accuracy and loss against queries while it runs, and ends
with clean and adversarial scores, queries and engine time. ``--init both`` attacks the same
images from vertical and from horizontal stripes: the paper's Figure 4.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.live import Live
from rich.table import Table

from engines.base import Engine
from harness.attacks.base import check_eps
from harness.attacks.oracle import ORACLES
from harness.attacks.square import INITS, SquareAttack, SquareConfig, SquareState
from harness.attacks.square_state import load_state, run_context, save_state, state_path
from harness.commands.common import (
    add_data_arguments,
    add_model_arguments,
    console,
    data_from_args,
    float_in,
    int_in,
    load_model,
    pixel_scale,
    seed_int,
)
from harness.commands.engine_options import add_engine_arguments, engine_from_args
from harness.data.base import SegmentationData
from harness.errors import HarnessError
from harness.fileio import check_outputs, write_json_atomic
from harness.limits import MAX_IMAGES, MAX_QUERIES, MAX_SEED
from harness.metrics import ConfusionMatrix, Scores
from harness.threads import set_threads
from reports.figures import plot_square_curves
from reports.results import make_record, write_results
from reports.tables import ReadableTable, scores_table

HELP = "black-box Square Attack (L∞) against an engine: accuracy against queries, clean vs adversarial"
SAVE_EVERY_SECONDS = 15.0  # a killed run loses at most this much work
DISPLAY_EVERY_SECONDS = 0.25
INTERRUPTED = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_engine_arguments(parser, default_engine="ort")
    group = parser.add_argument_group("attack")
    group.add_argument("--queries", type=int_in(1, MAX_QUERIES), default=1000, metavar="N",
                       help=f"query budget per image, the initial query included, 1-{MAX_QUERIES} (default 1000)")
    group.add_argument("--eps", type=pixel_scale, default=8.0,
                       help="L∞ radius on the 0-255 pixel scale, in (0, 255] (default 8, i.e. 8/255)")
    group.add_argument("--p-init", type=float_in(0, 1, open_min=True), default=0.05,
                       help="fraction of the image the first squares cover, in (0, 1] (default 0.05)")
    group.add_argument("--init", default="vertical", choices=(*INITS, "both"),
                       help="stripe initialisation (default vertical); both: run each, the paper's Figure 4")
    group.add_argument("--loss", default="ce", choices=ORACLES,
                       help="oracle: ce, the paper's pixel-wise cross entropy (default), or margin")
    group.add_argument("--seed", type=seed_int, default=0, metavar="SEED",
                       help=f"seed of the attack's random stream, 0-{MAX_SEED} (default 0)")
    group.add_argument("--resume", action="store_true",
                       help="continue the saved state of this same run (after Ctrl-C or a kill)")
    group = parser.add_argument_group("output")
    group.add_argument("--split", default="val", choices=("train", "val"))
    group.add_argument("--n-images", type=int_in(1, MAX_IMAGES), default=8, metavar="N",
                       help=f"attack the first N images, 1-{MAX_IMAGES} (default 8)")
    group.add_argument("--json", metavar="FILE", help="write results.json (README: Results schema) to FILE")
    group.add_argument("--curve", metavar="FILE",
                       help="write the accuracy/loss-against-queries curve to FILE (JSON) and beside it as PNG")
    add_data_arguments(parser)


@dataclass
class Outcome:
    """One finished attack run and the scores of its adversarial images."""

    config: SquareConfig
    state: SquareState
    scores: Scores


def run(args: argparse.Namespace) -> int:
    configs = _configs(args)
    curve_png = Path(args.curve).with_suffix(".png") if args.curve else None
    check_outputs({"--json": args.json, "--curve": args.curve, "--curve (its PNG)": curve_png})
    set_threads()
    data = data_from_args(args, args.split, args.n_images)
    images, labels = (np.ascontiguousarray(t.numpy()) for t in data.tensors(slice(None)))
    model, source = load_model(args, data)
    with engine_from_args(args, model, source, data) as engine:
        contexts = [run_context(args.model, args.size, source["sha256"], engine.info.as_dict(), data.describe(),
                                len(data), config) for config in configs]
        if args.resume and not any(state_path(context).is_file() for context in contexts):
            raise HarnessError("no saved Square Attack state of this run (same model, engine, images and "
                               "attack options) to resume; start it without --resume")
        clean, clean_seconds = _clean_scores(engine, images, labels, data.num_classes)
        outcomes = []
        for config, context in zip(configs, contexts, strict=True):
            outcome = _attack(engine, config, context, images, labels, data, args)
            if outcome is None:
                return INTERRUPTED
            outcomes.append(outcome)
        info = engine.info.as_dict()
    _report(args, data, clean, clean_seconds, outcomes)
    if args.curve:
        _write_curve(args, data, clean, outcomes, info)
    if args.json:
        write_results(args.json, _records(args, data, source, info, clean, clean_seconds, outcomes))
        console.print(f"wrote {args.json}")
    return 0


def _configs(args: argparse.Namespace) -> list[SquareConfig]:
    check_eps(args.eps)
    if not 0 < args.p_init <= 1:
        raise HarnessError(f"--p-init {args.p_init} is outside (0, 1]")
    if args.curve and Path(args.curve).suffix.lower() != ".json":
        raise HarnessError(f"--curve {args.curve}: give a .json file name; the PNG is written beside it")
    inits = INITS if args.init == "both" else (args.init,)
    configs = [SquareConfig(eps=args.eps, queries=args.queries, p_init=args.p_init, init=init, loss=args.loss,
                            seed=args.seed) for init in inits]
    for config in configs:
        config.validate()  # the attack's own limits (its smallest eps), before any work
    return configs


def _clean_scores(engine: Engine, images: np.ndarray, labels: np.ndarray, num_classes: int
                  ) -> tuple[Scores, float]:
    start = time.perf_counter()
    confusion = ConfusionMatrix(num_classes)
    confusion.update(engine.infer(images).argmax(1), labels)
    return confusion.scores(), time.perf_counter() - start


def _attack(engine: Engine, config: SquareConfig, context: dict[str, Any], images: np.ndarray, labels: np.ndarray,
            data: SegmentationData, args: argparse.Namespace) -> Outcome | None:
    """Run one attack, or with ``--resume`` continue its saved state (a run of ``--init both`` that was
    stopped in its first half has no state for its second yet: that one starts afresh). None when the
    user stopped it; its state is saved then."""
    path = state_path(context)
    state = load_state(path, context, config, images, labels, data.num_classes) \
        if args.resume and path.is_file() else None
    if state is None and path.is_file() and not args.resume:
        print(f"starting afresh; the saved state of this run at {path} is replaced (--resume continues it)",
              file=sys.stderr)
    display = _Display(config, len(images))
    last_save: float | None = None  # save the first state at once, so that even an early kill can resume

    def after_iteration(current: SquareState) -> None:
        nonlocal last_save
        display.update(current)
        if last_save is None or time.perf_counter() - last_save >= SAVE_EVERY_SECONDS:
            save_state(path, current, context)
            last_save = time.perf_counter()

    with _stop_on_signal() as stop, Live(display.render(state), console=console, auto_refresh=False) as live:
        display.live = live
        state = SquareAttack(config).run(engine, images, labels, state, after_iteration, stop.requested)
        display.update(state, force=True)
    if not console.is_terminal:
        console.line()  # a Live view printed to a file or pipe ends without a newline
    save_state(path, state, context)
    if not state.finished:
        print(f"stopped after {int(state.queries.max())} of {config.queries} queries per image; state saved to "
              f"{path}; run the same command with --resume to continue", file=sys.stderr)
        return None
    confusion = ConfusionMatrix(data.num_classes)
    confusion.update(state.best_pred, labels)
    return Outcome(config, state, confusion.scores())


class _StopFlag:
    def __init__(self) -> None:
        self.stop = False

    def requested(self) -> bool:
        return self.stop


@contextmanager
def _stop_on_signal() -> Iterator[_StopFlag]:
    """Ctrl-C (SIGINT) or SIGTERM asks the attack to stop after its current iteration, so that
    its state is saved consistently; a second Ctrl-C interrupts at once."""
    flag = _StopFlag()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: object) -> None:
        flag.stop = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _Display:
    """The live view: queries spent, images still attacked, pixel accuracy and loss, throughput."""

    def __init__(self, config: SquareConfig, n_images: int) -> None:
        self.config = config
        self.n_images = n_images
        self.live: Live | None = None
        self.last = 0.0

    def update(self, state: SquareState, force: bool = False) -> None:
        now = time.perf_counter()
        if self.live is not None and (force or now - self.last >= DISPLAY_EVERY_SECONDS):
            self.live.update(self.render(state), refresh=True)
            self.last = now

    def render(self, state: SquareState | None) -> Table:
        table = Table(title=f"Square Attack, {self.config.init} init, eps {self.config.eps:g}/255, "
                            f"{self.config.loss} oracle, {self.n_images} images")
        for column in ("queries / image", "attacked", "pixel acc %", "mean loss", "queries/s", "in engine"):
            table.add_column(column, justify="right")
        if state is None:
            table.add_row(f"0 / {self.config.queries}", str(self.n_images), "-", "-", "-", "-")
            return table
        spent = int(state.queries.sum())
        table.add_row(f"{int(state.queries.max())} / {self.config.queries}", str(state.active.size),
                      f"{100 * state.pixel_accuracy:.2f}", f"{state.mean_loss:.4f}",
                      f"{spent / max(state.seconds, 1e-9):.1f}",
                      f"{100 * state.engine_seconds / max(state.seconds, 1e-9):.0f} %")
        return table


def _report(args: argparse.Namespace, data: SegmentationData, clean: Scores, clean_seconds: float,
            outcomes: list[Outcome]) -> None:
    """The per-class scores, then the summary the issue asks for: clean and adversarial pixel accuracy
    and mIoU, queries spent, queries per second and the share of the time spent inside the engine."""
    rows = [("clean", clean)] + [(o.config.init, o.scores) for o in outcomes]
    console.print(scores_table(
        f"{args.model} ({args.size}) on {args.engine} {args.precision}, {data.name} {data.split}, {len(data)} images, "
        f"{clean.n_pixels} labelled pixels (values in %)", data.class_names, rows))
    table = ReadableTable(title=f"Square Attack, eps {args.eps:g}/255, {args.queries} queries per image, "
                        f"p_init {args.p_init:g}, {args.loss} oracle, seed {args.seed}")
    for column in ("", "pixel acc %", "mIoU %", "queries", "queries/s", "engine s", "wall s", "in engine"):
        table.add_column(column, justify="right")
    table.add_row("clean", f"{100 * clean.pixel_accuracy:.2f}", f"{100 * clean.mean_iou:.2f}", str(len(data)),
                  "", "", f"{clean_seconds:.1f}", "")
    for o in outcomes:
        spent, seconds = int(o.state.queries.sum()), max(o.state.seconds, 1e-9)
        table.add_row(o.config.init, f"{100 * o.scores.pixel_accuracy:.2f}", f"{100 * o.scores.mean_iou:.2f}",
                      str(spent), f"{spent / seconds:.1f}", f"{o.state.engine_seconds:.1f}", f"{seconds:.1f}",
                      f"{100 * o.state.engine_seconds / seconds:.1f} %")
    console.print(table)


def _curve_document(args: argparse.Namespace, data: SegmentationData, clean: Scores, outcomes: list[Outcome],
                    info: dict[str, Any]) -> dict[str, Any]:
    return {"model": args.model, "size": args.size, "engine": info, "data": data.describe(),
            "n_images": len(data), "clean_pixel_accuracy": clean.pixel_accuracy,
            "curves": [{"params": o.config.as_dict(), "points": [vars(p) for p in o.state.curve]} for o in outcomes]}


def _write_curve(args: argparse.Namespace, data: SegmentationData, clean: Scores, outcomes: list[Outcome],
                 info: dict[str, Any]) -> None:
    path = Path(args.curve)
    png = path.with_suffix(".png")
    write_json_atomic(path, _curve_document(args, data, clean, outcomes, info))
    plot_square_curves({f"{o.config.init} init": [vars(p) for p in o.state.curve] for o in outcomes}, png,
                       f"Square Attack on {args.model} ({args.engine} {args.precision}), eps {args.eps:g}/255, "
                       f"{len(data)} images", clean.pixel_accuracy)
    console.print(f"wrote {path} and {png}")


def _records(args: argparse.Namespace, data: SegmentationData, source: dict[str, Any], info: dict[str, Any],
             clean: Scores, clean_seconds: float, outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """The clean record of the attacked images and one adversarial record per initialisation."""
    common = {"model": args.model, "engine": args.engine, "precision": args.precision, "n_images": len(data),
              "size": args.size, "data": data.describe(), "weights_sha256": source["sha256"], "engine_info": info}
    records = [make_record(**common, attack="none", params={}, scores=clean, queries=len(data),
                           seconds=clean_seconds)]
    for o in outcomes:
        params = {k: v for k, v in o.config.as_dict().items() if k != "curve_every"}
        records.append(make_record(**common, attack="square", params=params, scores=o.scores,
                                   queries=int(o.state.queries.sum()), seconds=o.state.seconds,
                                   engine_seconds=round(o.state.engine_seconds, 4),
                                   queries_per_image_max=int(o.state.queries.max()),
                                   curve=[vars(p) for p in o.state.curve]))
    return records

