"""A hard-label (decision-based) L∞ attack for semantic segmentation: class maps in, nothing else.

The attack sees only what a deployed model that ends in an argmax returns: one class per pixel
(``engine.predict``, never ``infer``'s scores). Its only signal is how many labelled pixels of an
image the class map still gets right. In the spirit of the hard-label segmentation attacks of the
field (stripe initialisation, then hierarchical sign flips; Chen et al. 2024), written from the
method's description:

- the perturbation is ε times a sign per pixel and channel, started as the Square Attack's (stripes,
  one sign per column or row and channel, or a pixel checkerboard; the same start for the same seed;
  ``auto``: stripes, and the checkerboard as the first candidate);
- each iteration flips the signs of one block of each image still under attack (a square of pixels
  in one channel, or in all channels with ``colour = grey``), sends all candidates in one engine
  call, and keeps a candidate when its image's count of correct pixels drops (a tie keeps the
  current best);
- blocks come level by level, halving their side from half the image to one pixel; a level visits
  each of its blocks once, per image in its own pseudo-random order; after the finest level the
  levels start again.

Template-method split (DESIGN.md): the budgeted query loop, its bookkeeping and resumable states are
harness/attacks/query_loop.py's (shared with the Square Attack); :class:`HardLabelAttack` gives only its start
(:meth:`HardLabelAttack._start`) and one iteration's candidates and acceptance (:meth:`HardLabelAttack._improve`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from harness.attacks.oracle import Oracle
from harness.attacks.query_loop import (
    CHANNELS,
    Answers,
    BlackBoxAttack,
    BudgetConfig,
    RunProgress,
    progress_problem,
    sharded_query,
    timed,
)
from harness.attacks.square import AUTO_FIRST_CANDIDATE, COLOURS, STARTS, init_signs
from harness.data.base import IGNORE_INDEX
from harness.errors import HarnessError

# Tries at drawing a multiplier coprime to a level's block count: each succeeds with probability >= 6/pi^2 / 2
# for the counts that occur, so the fallback (multiplier 1: the blocks in order from a random start) is rare.
_COPRIME_TRIES = 64


class ClassMapEngine(Protocol):
    """All the attack needs: ``predict(images float32 (N, 3, H, W) in [0, 1]) -> classes int (N, H, W)``.
    Every Engine of engines/base.py qualifies (a class-map target too); so does any object with that method."""

    def predict(self, images: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class HardLabelConfig(BudgetConfig):
    """Parameters of one run.

    eps: L∞ radius on the 0-255 pixel scale (8 means 8/255); queries: per-image budget, the initial
    query included; init: the start (square.STARTS); seed: the random stream of the whole run (start and
    block orders); curve_every: queries between curve points (0: about DEFAULT_CURVE_POINTS points);
    colour: ``rgb``, a block is one channel's, or ``grey``, a block spans all channels (a brightness flip).
    """

    eps: float
    queries: int
    init: str = "vertical"
    seed: int = 0
    curve_every: int = 0
    colour: str = "rgb"

    def validate(self) -> None:
        self.check_budget("hard-label attack")
        if self.init not in STARTS:
            raise HarnessError(f"unknown init {self.init!r}; choose from: {', '.join(STARTS)}")
        if self.curve_every < 0:
            raise HarnessError(f"curve_every must be >= 0, got {self.curve_every}")
        if self.colour not in COLOURS:
            raise HarnessError(f"unknown block colour {self.colour!r}; choose from: {', '.join(COLOURS)}")

    @property
    def block_channels(self) -> int:
        """Channels a block is cut in: each channel its own blocks (rgb) or one block for all (grey)."""
        return CHANNELS if self.colour == "rgb" else 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(kw_only=True)
class HardLabelState(RunProgress):
    """Everything a run needs to continue, and everything it reports: the bookkeeping of
    :class:`~harness.attacks.query_loop.RunProgress` (best_loss: the fraction of its labelled pixels each best
    image gets wrong, the only score a class map gives; ``engine_seconds``: inside ``predict``; iteration: block
    flips done) and signs int8 (N, 3, H, W): the best perturbation per image, ε times these signs
    (:meth:`adversarial`).
    """

    config: HardLabelConfig
    signs: np.ndarray

    def adversarial(self, images: np.ndarray) -> np.ndarray:
        """The best images: ``images`` float32 (N, 3, H, W) plus ε times the signs, clipped to [0, 1]."""
        return perturbed(images, self.signs, self.config.radius)


def perturbed(images: np.ndarray, signs: np.ndarray, radius: float) -> np.ndarray:
    """``clip(images + radius * signs, 0, 1)`` in float32: x ± ε exactly as the Square Attack computes it."""
    return np.clip(images + np.float32(radius) * signs, 0, 1).astype(np.float32, copy=False)


def fooled_fraction(correct: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """Per image the fraction of labelled pixels the class map gets wrong, float64: the attack's score."""
    return 1.0 - correct / labelled


def level_sides(height: int, width: int) -> list[int]:
    """Block sides of the levels, coarsest first: half the longer side of the image, halved (rounded up)
    down to 1 pixel."""
    sides, side = [], max(height, width)
    while side > 1:
        side = math.ceil(side / 2)
        sides.append(side)
    return sides or [1]


def block_grid(side: int, height: int, width: int) -> tuple[int, int]:
    """Rows and columns of blocks of ``side`` pixels that cover the image (the last ones may be cut)."""
    return math.ceil(height / side), math.ceil(width / side)


def schedule_position(iteration: int, height: int, width: int, channels: int = CHANNELS) -> tuple[int, int, int]:
    """(cycle, level, step within the level) of block flip ``iteration`` (0-based): level l has
    ``channels`` * rows * columns blocks of side ``level_sides[l]``, each flipped once per cycle."""
    counts = [channels * math.prod(block_grid(side, height, width)) for side in level_sides(height, width)]
    cycle, step = divmod(iteration, sum(counts))
    for level, count in enumerate(counts):
        if step < count:
            return cycle, level, step
        step -= count
    raise AssertionError("unreachable: step < sum(counts)")


def block_orders(seed: int, cycle: int, level: int, n_images: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image the pseudo-random order of a level's ``count`` blocks: the j-th block visited is
    ``(a * j + b) % count``, with ``a`` coprime to ``count`` (so each block comes once). Derived from
    (seed, cycle, level) alone, so a resumed run visits the blocks the uninterrupted one would."""
    rng = np.random.default_rng([seed, cycle, level])
    offsets = rng.integers(0, count, size=n_images)
    multipliers = np.ones(n_images, dtype=np.int64)
    if count > 2:
        for i in range(n_images):
            for _ in range(_COPRIME_TRIES):
                a = int(rng.integers(1, count))
                if math.gcd(a, count) == 1:
                    multipliers[i] = a
                    break
    return multipliers, offsets


class HardLabelAttack(BlackBoxAttack[HardLabelConfig, HardLabelState]):
    """``HardLabelAttack(config).run(engine, images, labels)``: the decision-based attack above.

    The guarantees of :class:`~harness.attacks.query_loop.BlackBoxAttack` (those of the Square Attack), through
    ``predict`` (class maps) alone; the best never getting worse: each image's count of correct pixels never rises.
    """

    title = "hard-label attack"
    state_type = HardLabelState
    perturbation = ("signs", np.int8)
    pieces = "blocks"

    def _check_engine(self, engine: ClassMapEngine) -> None:
        if not callable(getattr(engine, "predict", None)):
            raise HarnessError("the hard-label attack needs an engine with predict(images) -> class maps")

    def _loss_name(self) -> str:
        return "ce"  # for the oracle's checked labels and counts only: no score is ever read

    def _predict(self, engine: ClassMapEngine, clean: np.ndarray, signs: np.ndarray, oracle: Oracle,
                 rows: np.ndarray | None) -> tuple[Answers, float]:
        """The engine's class maps uint8 (n, H, W) of the candidates ``perturbed(clean, signs)`` (the run's images
        ``rows``; None: all), their correct-pixel counts (``small``) and the seconds taken (under torchrun each rank
        builds and asks about its slice only: sharded_query)."""
        radius = self.config.radius
        return sharded_query(lambda batch, part_rows: self._class_maps(engine, batch, oracle, part_rows),
                             lambda part: perturbed(clean[part], signs[part], radius), len(clean), rows, (np.int64,),
                             clean.shape[2:])

    def _class_maps(self, engine: ClassMapEngine, batch: np.ndarray, oracle: Oracle,
                    rows: np.ndarray) -> tuple[tuple[np.ndarray], np.ndarray, float]:
        answer, seconds = timed(engine.predict, batch)
        maps = np.asarray(answer)
        if maps.shape != (len(batch), *batch.shape[2:]) or maps.dtype.kind not in "iu":
            raise HarnessError(f"the engine's predict returned {maps.dtype} {maps.shape} for images {batch.shape}; "
                               "expected integer class maps (N, H, W)")
        if maps.size and (maps.min() < 0 or maps.max() >= IGNORE_INDEX):
            raise HarnessError(f"the engine's predict returned classes {int(maps.min())}..{int(maps.max())}; "
                               f"expected 0..{IGNORE_INDEX - 1}")
        maps = maps.astype(np.uint8)
        return ((maps == oracle.labels[rows]).sum(axis=(1, 2), dtype=np.int64),), maps, seconds

    def _start(self, engine: ClassMapEngine, images: np.ndarray, oracle: Oracle,
               rng: np.random.Generator) -> tuple[dict[str, np.ndarray], float]:
        signs = init_signs(images.shape, self.config.init, rng)  # the Square Attack's start for the same seed
        answers, seconds = self._predict(engine, images, signs, oracle, None)
        (correct,) = answers.small
        return {"signs": signs, "best_loss": fooled_fraction(correct, oracle.labelled),
                "best_pred": answers.maps(np.ones(len(images), bool)), "correct": correct}, seconds

    def _improve(self, engine: ClassMapEngine, images: np.ndarray, oracle: Oracle, state: HardLabelState,
                 active: np.ndarray, rng: np.random.Generator) -> float:
        """One block of signs flipped per active image, one engine call, keep what fools more."""
        if state.iteration < self.config.first_update:  # the other start as the first candidate
            signs = init_signs((active.size, *images.shape[1:]), AUTO_FIRST_CANDIDATE, rng)
        else:
            signs = self._flipped(state, active, images.shape)
        rows = None if active.size == len(images) else active
        clean = images if rows is None else images[active]
        answers, seconds = self._predict(engine, clean, signs, oracle, rows)
        (correct,) = answers.small
        better = correct < state.correct[active]
        won = active[better]
        state.signs[won] = signs[better]
        state.best_pred[won] = answers.maps(better)
        state.correct[won] = correct[better]
        state.best_loss[won] = fooled_fraction(correct[better], state.labelled[won])
        return seconds

    def _own_problem(self, state: HardLabelState, images: np.ndarray, oracle: Oracle,
                     num_classes: int | None) -> str | None:
        """Signs that are all -1 or +1 (so the images are in the ε-ball and in [0, 1] by construction), the shared
        bookkeeping (``query_loop.progress_problem``), and scores that are the fooled fractions of the counts."""
        if not np.all(np.abs(state.signs) == 1):
            return "has signs other than -1 and +1"
        problem = progress_problem(state, self.config, oracle, num_classes)
        if problem is not None:
            return problem
        if not np.array_equal(state.best_loss, fooled_fraction(state.correct, state.labelled)):
            return "has scores that are not the fooled fractions of its correct-pixel counts"
        return None

    def _flipped(self, state: HardLabelState, active: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """The signs of the best images of ``active`` with this iteration's block of each flipped (a copy)."""
        n, _, h, w = shape
        channels = self.config.block_channels
        cycle, level, step = schedule_position(state.iteration - self.config.first_update, h, w, channels)
        side = level_sides(h, w)[level]
        grid_rows, grid_cols = block_grid(side, h, w)
        count = channels * grid_rows * grid_cols
        multipliers, offsets = block_orders(self.config.seed, cycle, level, n, count)
        blocks = (multipliers[active] * step + offsets[active]) % count
        channel, rest = np.divmod(blocks, grid_rows * grid_cols)
        top, left = np.divmod(rest, grid_cols)
        signs = state.signs[active]  # a copy: fancy indexing
        for i, (c, r, q) in enumerate(zip(channel, top * side, left * side, strict=True)):
            signs[i, c if channels > 1 else slice(None), r:r + side, q:q + side] *= -1
        return signs
