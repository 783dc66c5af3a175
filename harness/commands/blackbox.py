"""``blackbox``: a black-box attack against a deployed engine (ort, trt, torch) of the model under test.

``--attack square`` (default): the Square Attack, which sees images in and scores out; its masked
oracles (``--loss mce|mmargin``) and ``--p-schedule scaled`` go beyond the paper's. ``--attack
hardlabel``: a decision-based attack that sees class maps only (``engine.predict``), so it also runs
against a target whose output is an argmax. The command evaluates the same images clean through the
same engine, shows accuracy against queries while it runs, and ends with clean and adversarial
scores, queries and engine time. ``--init both`` attacks the same images from vertical and from
horizontal stripes: the paper's Figure 4.
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
from harness import distributed
from harness.attacks.base import check_eps
from harness.attacks.blackbox_attacks import BLACKBOX_ATTACKS
from harness.attacks.blackbox_attacks import title as attack_title
from harness.attacks.hard_label import HardLabelAttack, HardLabelConfig, HardLabelState
from harness.attacks.oracle import ORACLES
from harness.attacks.square import (
    COLOURS,
    INITS,
    P_SCHEDULES,
    STARTS,
    SquareAttack,
    SquareConfig,
    SquareState,
    require_scores,
)
from harness.attacks.square_state import load_state, run_context, save_state, state_path
from harness.commands.common import (
    add_data_arguments,
    console,
    data_from_args,
    float_in,
    int_in,
    pixel_scale,
    seed_int,
)
from harness.commands.engine_options import add_engine_arguments, target_engine_from_args
from harness.commands.target_options import add_target_arguments, record_fields, target_from_args, target_title
from harness.data.base import SegmentationData
from harness.errors import HarnessError
from harness.fileio import check_outputs, write_json_atomic
from harness.limits import MAX_IMAGES, MAX_QUERIES, MAX_SEED
from harness.metrics import ConfusionMatrix, Scores
from harness.targets.target import Target
from harness.threads import set_threads
from reports.figures import plot_square_curves
from reports.results import make_record, write_results
from reports.tables import ReadableTable, scores_table

HELP = ("black-box attack (L∞) against an engine: Square (scores) or hardlabel (class maps only); accuracy "
        "against queries, clean vs adversarial")
FIGURE_4_INITS = INITS  # --init both: the paper's two stripe orientations
# Options of the Square Attack only (None: not given), with their defaults.
SQUARE_OPTIONS = {"loss": ("--loss", "ce"), "p_init": ("--p-init", 0.05), "p_schedule": ("--p-schedule", "paper")}
SAVE_EVERY_SECONDS = 15.0  # a killed run loses at most this much work
DISPLAY_EVERY_SECONDS = 0.25
INTERRUPTED = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    add_engine_arguments(parser, default_engine="ort")
    group = parser.add_argument_group("attack")
    group.add_argument("--attack", default="square", choices=BLACKBOX_ATTACKS,
                       help="square: the Square Attack, reads scores (default); hardlabel: decision-based, reads "
                            "class maps only (engine.predict), for targets whose output is an argmax")
    group.add_argument("--queries", type=int_in(1, MAX_QUERIES), default=1000, metavar="N",
                       help=f"query budget per image, the initial query included, 1-{MAX_QUERIES} (default 1000)")
    group.add_argument("--eps", type=pixel_scale, default=8.0,
                       help="L∞ radius on the 0-255 pixel scale, in (0, 255] (default 8, i.e. 8/255)")
    group.add_argument("--p-init", type=float_in(0, 1, open_min=True),
                       help="square: fraction of the image the first squares cover, in (0, 1] (default 0.05)")
    group.add_argument("--p-schedule", choices=P_SCHEDULES,
                       help="square: how squares shrink; paper: the reference schedule (default); scaled: by the "
                            "image size, one cover of the image per square size, squares of at least 3 pixels")
    group.add_argument("--colour", choices=COLOURS, default="rgb",
                       help="rgb: a square has one ±eps sign per channel (the paper's), a hard-label block is one "
                            "channel's (default); grey: one sign for all channels (a brightness step)")
    group.add_argument("--init", default="vertical", choices=(*STARTS, "both"),
                       help="the start: vertical or horizontal stripes (default vertical; the paper's), checker: a "
                            "pixel checkerboard (stronger on VGG-type models); both: vertical and horizontal, the "
                            "paper's Figure 4")
    group.add_argument("--loss", choices=ORACLES,
                       help="square's oracle: ce, the paper's pixel-wise cross entropy (default); margin; mce and "
                            "mmargin: cross entropy or margin of the still-correct pixels only")
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


Config = SquareConfig | HardLabelConfig
State = SquareState | HardLabelState


@dataclass
class Outcome:
    """One finished attack run and the scores of its adversarial images."""

    config: Config
    state: State
    scores: Scores


def run(args: argparse.Namespace) -> int:
    configs = _configs(args)
    title = attack_title(args.attack)
    curve_png = Path(args.curve).with_suffix(".png") if args.curve else None
    check_outputs({"--json": args.json, "--curve": args.curve, "--curve (its PNG)": curve_png})
    set_threads()
    data = data_from_args(args, args.split, args.n_images)
    images, labels = (np.ascontiguousarray(t.numpy()) for t in data.tensors(slice(None)))
    target = target_from_args(args, data)
    with target_engine_from_args(args, target, data) as engine:
        if args.attack == "square":
            require_scores(engine, "the Square Attack")  # before any work: a class map has no scores to read
        contexts = [_context(target, engine, data, config) for config in configs]
        if args.resume and not distributed.from_main(lambda: any(
                state_path(c, config=config).is_file() for c, config in zip(contexts, configs, strict=True))):
            raise HarnessError(f"no saved {title} state of this run (same model, engine, images and "
                               "attack options) to resume; start it without --resume")
        clean, clean_seconds = _clean_scores(engine, images, labels, data.num_classes)
        outcomes = []
        for config, context in zip(configs, contexts, strict=True):
            outcome = _attack(engine, config, context, images, labels, data, args)
            if outcome is None:
                return INTERRUPTED
            outcomes.append(outcome)
        info = engine.info.as_dict()
    _report(args, target, data, clean, clean_seconds, outcomes)
    if args.curve:
        _write_curve(args, target, data, clean, outcomes, info)
    if args.json:
        write_results(args.json, _records(args, target, data, info, clean, clean_seconds, outcomes))
        console.print(f"wrote {args.json}")
    return 0


def _context(target: Target, engine: Engine, data: SegmentationData, config: Config) -> dict[str, Any]:
    """What a saved run must have been run with: a built-in model's as before targets existed (its saved runs
    still resume), a user's target also with its description (file, sha256, card)."""
    context = run_context(target.name, target.size or target.kind, target.sha256, engine.info.as_dict(),
                          data.describe(), len(data), config)
    if target.kind != "builtin":
        context["target"] = target.describe()
    return context


def _configs(args: argparse.Namespace) -> list[Config]:
    check_eps(args.eps)
    if args.curve and Path(args.curve).suffix.lower() != ".json":
        raise HarnessError(f"--curve {args.curve}: give a .json file name; the PNG is written beside it")
    inits = FIGURE_4_INITS if args.init == "both" else (args.init,)
    configs: list[Config]
    if args.attack == "hardlabel":
        given = [option for name, (option, _) in SQUARE_OPTIONS.items() if getattr(args, name) is not None]
        if given:
            raise HarnessError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to --attack square; "
                               "the hard-label attack reads no scores and flips blocks of signs instead of squares")
        configs = [HardLabelConfig(eps=args.eps, queries=args.queries, init=init, seed=args.seed, colour=args.colour)
                   for init in inits]
    else:
        square = {name: default if getattr(args, name) is None else getattr(args, name)
                  for name, (_, default) in SQUARE_OPTIONS.items()}
        if not 0 < square["p_init"] <= 1:
            raise HarnessError(f"--p-init {square['p_init']} is outside (0, 1]")
        configs = [SquareConfig(eps=args.eps, queries=args.queries, init=init, seed=args.seed, colour=args.colour,
                                **square) for init in inits]
    for config in configs:
        config.validate()  # the attack's own limits (its smallest eps), before any work
    return configs


def _clean_scores(engine: Engine, images: np.ndarray, labels: np.ndarray, num_classes: int
                  ) -> tuple[Scores, float]:
    """Scores of the clean images from the engine's class maps (``predict``: a class-map target has no scores);
    under torchrun each rank scores its slice (``distributed.shard``) and the counts are summed."""
    start = time.perf_counter()
    confusion = ConfusionMatrix(num_classes)
    distributed.same_inputs("the images and labels to attack", images, labels)
    mine = distributed.shard(len(images))
    if len(mine):
        confusion.update(engine.predict(images[mine.start:mine.stop]), labels[mine.start:mine.stop])
    confusion.matrix = distributed.sum_over_ranks(confusion.matrix)
    return confusion.scores(), time.perf_counter() - start


def _attack(engine: Engine, config: Config, context: dict[str, Any], images: np.ndarray, labels: np.ndarray,
            data: SegmentationData, args: argparse.Namespace) -> Outcome | None:
    """Run one attack, or with ``--resume`` continue its saved state (a run of ``--init both`` that was
    stopped in its first half has no state for its second yet: that one starts afresh). None when the
    user stopped it; its state is saved then."""
    path = state_path(context, config=config)
    # Read by rank 0 and handed to all: the ranks of a lockstep run (query_loop.sharded_query) start alike.
    state = distributed.from_main(lambda: load_state(path, context, config, images, labels, data.num_classes)
                                  if args.resume and path.is_file() else None)
    if state is None and path.is_file() and not args.resume:
        print(f"starting afresh; the saved state of this run at {path} is replaced (--resume continues it)",
              file=sys.stderr)
    display = _Display(config, len(images))
    last_save: float | None = None  # save the first state at once, so that even an early kill can resume

    def after_iteration(current: State) -> None:
        nonlocal last_save
        display.update(current)
        if last_save is None or time.perf_counter() - last_save >= SAVE_EVERY_SECONDS:
            save_state(path, current, context)
            last_save = time.perf_counter()

    with _stop_on_signal() as stop, Live(display.render(state), console=console, auto_refresh=False) as live:
        display.live = live
        attack = HardLabelAttack(config) if isinstance(config, HardLabelConfig) else SquareAttack(config)
        state = attack.run(engine, images, labels, state, after_iteration, stop.requested)
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

    def __init__(self, config: Config, n_images: int) -> None:
        self.config = config
        self.n_images = n_images
        self.live: Live | None = None
        self.last = 0.0

    def update(self, state: State, force: bool = False) -> None:
        now = time.perf_counter()
        if self.live is not None and (force or now - self.last >= DISPLAY_EVERY_SECONDS):
            self.live.update(self.render(state), refresh=True)
            self.last = now

    def render(self, state: State | None) -> Table:
        what = f"{self.config.loss} oracle" if isinstance(self.config, SquareConfig) else "class maps only"
        title = "Square Attack" if isinstance(self.config, SquareConfig) else "hard-label attack"
        table = Table(title=f"{title}, {self.config.init} init, eps {self.config.eps:g}/255, {what}, "
                            f"{self.n_images} images")
        loss = "mean loss" if isinstance(self.config, SquareConfig) else "fooled fraction"
        for column in ("queries / image", "attacked", "pixel acc %", loss, "queries/s", "in engine"):
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


def _attack_summary(args: argparse.Namespace, outcomes: list[Outcome]) -> str:
    """The attack and its parameters, for table and figure titles."""
    config = outcomes[0].config
    if isinstance(config, HardLabelConfig):
        return (f"hard-label attack, eps {config.eps:g}/255, {config.queries} queries per image, class maps only, "
                f"{config.colour} blocks, seed {config.seed}")
    return (f"Square Attack, eps {config.eps:g}/255, {config.queries} queries per image, p_init {config.p_init:g}, "
            f"{config.p_schedule} p schedule, {config.colour} squares, {config.loss} oracle, seed {config.seed}")


def _report(args: argparse.Namespace, target: Target, data: SegmentationData, clean: Scores, clean_seconds: float,
            outcomes: list[Outcome]) -> None:
    """The per-class scores, then the summary the issue asks for: clean and adversarial pixel accuracy
    and mIoU, queries spent, queries per second and the share of the time spent inside the engine."""
    rows = [("clean", clean)] + [(o.config.init, o.scores) for o in outcomes]
    console.print(scores_table(
        f"{target_title(target)} on {args.engine} {args.precision}, {data.name} {data.split}, {len(data)} images, "
        f"{clean.n_pixels} labelled pixels (values in %)", data.class_names, rows))
    table = ReadableTable(title=_attack_summary(args, outcomes))
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


def _curve_document(args: argparse.Namespace, target: Target, data: SegmentationData, clean: Scores,
                    outcomes: list[Outcome], info: dict[str, Any]) -> dict[str, Any]:
    return {"model": target.name, "size": target.size or target.kind, "attack": args.attack, "engine": info,
            "data": data.describe(), "n_images": len(data), "clean_pixel_accuracy": clean.pixel_accuracy,
            "curves": [{"params": o.config.as_dict(), "points": [vars(p) for p in o.state.curve]} for o in outcomes]}


def _write_curve(args: argparse.Namespace, target: Target, data: SegmentationData, clean: Scores,
                 outcomes: list[Outcome], info: dict[str, Any]) -> None:
    path = Path(args.curve)
    png = path.with_suffix(".png")
    write_json_atomic(path, _curve_document(args, target, data, clean, outcomes, info))
    plot_square_curves({f"{o.config.init} init": [vars(p) for p in o.state.curve] for o in outcomes}, png,
                       f"{attack_title(args.attack)} on {target.name} ({args.engine} {args.precision}), "
                       f"eps {args.eps:g}/255, {len(data)} images", clean.pixel_accuracy)
    console.print(f"wrote {path} and {png}")


def _records(args: argparse.Namespace, target: Target, data: SegmentationData, info: dict[str, Any],
             clean: Scores, clean_seconds: float, outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """The clean record of the attacked images and one adversarial record per initialisation."""
    common = {"model": target.name, "engine": args.engine, "precision": args.precision, "n_images": len(data),
              **record_fields(target), "data": data.describe(),
              "weights_sha256": target.sha256 or info["artifact_sha256"], "engine_info": info}
    records = [make_record(**common, attack="none", params={}, scores=clean, queries=len(data),
                           seconds=clean_seconds)]
    for o in outcomes:
        params = {k: v for k, v in o.config.as_dict().items() if k != "curve_every"}
        records.append(make_record(**common, attack=args.attack, params=params, scores=o.scores,
                                   queries=int(o.state.queries.sum()), seconds=o.state.seconds,
                                   engine_seconds=round(o.state.engine_seconds, 4),
                                   queries_per_image_max=int(o.state.queries.max()),
                                   curve=[vars(p) for p in o.state.curve]))
    return records
