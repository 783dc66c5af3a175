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

Template-method split (DESIGN.md): :meth:`HardLabelAttack.run` validates, seeds, times and records;
:meth:`HardLabelAttack._step` is the algorithm of one iteration.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from harness.attacks.base import check_eps
from harness.attacks.oracle import Oracle
from harness.attacks.square import (
    AUTO_FIRST_CANDIDATE,
    COLOURS,
    DEFAULT_CURVE_POINTS,
    MIN_EPS,
    STARTS,
    CurvePoint,
    RunProgress,
    arrays_problem,
    fingerprint,
    init_signs,
    progress_problem,
)
from harness.data.base import IGNORE_INDEX
from harness.errors import HarnessError

CHANNELS = 3
# Tries at drawing a multiplier coprime to a level's block count: each succeeds with probability >= 6/pi^2 / 2
# for the counts that occur, so the fallback (multiplier 1: the blocks in order from a random start) is rare.
_COPRIME_TRIES = 64


class ClassMapEngine(Protocol):
    """All the attack needs: ``predict(images float32 (N, 3, H, W) in [0, 1]) -> classes int (N, H, W)``.
    Every Engine of engines/base.py qualifies (a class-map target too); so does any object with that method."""

    def predict(self, images: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class HardLabelConfig:
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
        check_eps(self.eps)
        if self.eps < MIN_EPS:
            raise HarnessError(f"eps {self.eps:g} is below the hard-label attack's minimum {MIN_EPS:g} (0-255 "
                               "scale): a step that small is lost in float32 rounding of [0, 1] pixels; give a "
                               "larger --eps")
        if self.queries < 1:
            raise HarnessError(f"the query budget must be >= 1, got {self.queries}")
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

    @property
    def radius(self) -> float:
        """ε in [0, 1] pixel units, the scale of the images."""
        return self.eps / 255.0

    @property
    def curve_step(self) -> int:
        return self.curve_every or max(1, self.queries // DEFAULT_CURVE_POINTS)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HardLabelState(RunProgress):
    """Everything a run needs to continue, and everything it reports.

    signs int8 (N, 3, H, W): the best perturbation per image, ε times these signs (:meth:`adversarial`);
    best_loss float64 (N,): the fraction of its labelled pixels each best image gets wrong (the only
    score a class map gives); best_pred uint8 (N, H, W): the engine's class map of the best image;
    correct int64 (N,): labelled pixels best_pred gets right; labelled int64 (N,); queries int64 (N,):
    engine queries spent per image (<= config.queries); iteration: block flips done (the initial query
    is not one); rng: the generator state; engine_seconds / seconds: wall time inside ``predict`` / of
    the whole run, summed over resumes; fingerprint: sha256 of the images, labels and config.
    """

    config: HardLabelConfig
    signs: np.ndarray
    best_loss: np.ndarray
    best_pred: np.ndarray
    correct: np.ndarray
    labelled: np.ndarray
    queries: np.ndarray
    iteration: int
    rng: dict[str, Any]
    fingerprint: str
    curve: list[CurvePoint] = field(default_factory=list)
    engine_seconds: float = 0.0
    seconds: float = 0.0

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


class HardLabelAttack:
    """``HardLabelAttack(config).run(engine, images, labels)``: the decision-based attack above.

    ``images`` float32 (N, 3, H, W) in [0, 1]; ``labels`` int64 (N, H, W), 255 = ignore. Guarantees
    (those of the Square Attack): per image at most ``config.queries`` images are sent to the engine, the
    initial query included; one ``predict`` call per iteration carries one candidate for each image still
    under attack; the adversarial images stay within ε/255 (L∞) of ``images`` and in [0, 1]; each image's
    count of correct pixels never rises. The same seed, inputs and engine give the same run, and a run
    continued from a saved state (``state=``) is the run it would have been.
    """

    def __init__(self, config: HardLabelConfig) -> None:
        config.validate()
        self.config = config

    def run(self, engine: ClassMapEngine, images: np.ndarray, labels: np.ndarray,
            state: HardLabelState | None = None, on_iteration: Callable[[HardLabelState], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> HardLabelState:
        """Attack until every image is fooled on all its pixels or has spent its budget.

        ``state``: a saved state of this same run to continue from (a HarnessError when it does not belong
        to it or breaks a guarantee: :meth:`state_problem`). ``on_iteration(state)`` runs after the initial
        query and after every iteration; ``should_stop()`` is asked between iterations: True ends the call
        early with a consistent state that can be saved and continued.
        """
        if not callable(getattr(engine, "predict", None)):
            raise HarnessError("the hard-label attack needs an engine with predict(images) -> class maps")
        images, labels = self._validate(images, labels)
        oracle = Oracle("ce", labels)  # for its checked labels and counts only: no score is ever read
        expected = fingerprint(images, labels, self.config)
        start = time.perf_counter()
        if state is None:
            rng = np.random.default_rng(self.config.seed)
            state = self._initial(engine, images, oracle, expected, rng)
            state.seconds += time.perf_counter() - start
            if on_iteration is not None:
                on_iteration(state)
        else:
            problem = _state_problem(state, self.config, images, oracle, expected)
            if problem is not None:
                raise HarnessError(f"the saved hard-label attack state {problem}")
            rng = np.random.default_rng()
            rng.bit_generator.state = state.rng
        # As the Square Attack's: queries - 1 iterations after the initial query spend every image's budget.
        for _ in range(self.config.queries - 1 - state.iteration):
            if state.finished or (should_stop is not None and should_stop()):
                break
            t0 = time.perf_counter()
            self._step(engine, images, oracle, state, rng)
            state.rng = rng.bit_generator.state
            state.seconds += time.perf_counter() - t0
            if on_iteration is not None:
                on_iteration(state)
        return state

    def state_problem(self, state: HardLabelState, images: np.ndarray, labels: np.ndarray,
                      num_classes: int | None = None) -> str | None:
        """Why ``state`` cannot continue this run on ``images`` and ``labels``, as a phrase ("has ..."), or None
        (``run`` refuses such a state with a HarnessError). ``num_classes``: the engine's classes, when known."""
        images, labels = self._validate(images, labels)
        return _state_problem(state, self.config, images, Oracle("ce", labels),
                              fingerprint(images, labels, self.config), num_classes)

    def _validate(self, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(images, np.ndarray) or images.dtype != np.float32 or images.ndim != 4 \
                or images.shape[1] != CHANNELS or len(images) < 1:
            raise HarnessError("images must be a float32 numpy array (N, 3, H, W) with N >= 1")
        if images.min() < 0 or images.max() > 1:
            raise HarnessError("images must lie in [0, 1]")
        if not isinstance(labels, np.ndarray) or labels.shape != (images.shape[0], *images.shape[2:]):
            raise HarnessError(f"labels must be (N, H, W) = {(images.shape[0], *images.shape[2:])}")
        return np.ascontiguousarray(images), labels.astype(np.int64)

    def _predict(self, engine: ClassMapEngine, batch: np.ndarray, oracle: Oracle,
                 rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, float]:
        """The engine's class maps uint8 (n, H, W) of ``batch``, their correct-pixel counts, the seconds taken."""
        t0 = time.perf_counter()
        maps = np.asarray(engine.predict(batch))
        seconds = time.perf_counter() - t0
        if maps.shape != (len(batch), *batch.shape[2:]) or maps.dtype.kind not in "iu":
            raise HarnessError(f"the engine's predict returned {maps.dtype} {maps.shape} for images {batch.shape}; "
                               "expected integer class maps (N, H, W)")
        if maps.size and (maps.min() < 0 or maps.max() >= IGNORE_INDEX):
            raise HarnessError(f"the engine's predict returned classes {int(maps.min())}..{int(maps.max())}; "
                               f"expected 0..{IGNORE_INDEX - 1}")
        maps = maps.astype(np.uint8)
        labels = oracle.labels if rows is None else oracle.labels[rows]
        return maps, (maps == labels).sum(axis=(1, 2), dtype=np.int64), seconds

    def _initial(self, engine: ClassMapEngine, images: np.ndarray, oracle: Oracle, run_fingerprint: str,
                 rng: np.random.Generator) -> HardLabelState:
        cfg = self.config
        signs = init_signs(images.shape, cfg.init, rng)  # the Square Attack's start for the same seed
        pred, correct, seconds = self._predict(engine, perturbed(images, signs, cfg.radius), oracle, None)
        labelled = oracle.labelled.copy()
        state = HardLabelState(
            config=cfg, signs=signs, best_loss=fooled_fraction(correct, labelled), best_pred=pred, correct=correct,
            labelled=labelled, queries=np.ones(len(images), dtype=np.int64), iteration=0,
            rng=rng.bit_generator.state, fingerprint=run_fingerprint, engine_seconds=seconds)
        state.curve.append(CurvePoint(1, state.pixel_accuracy, state.mean_loss))
        return state

    def _step(self, engine: ClassMapEngine, images: np.ndarray, oracle: Oracle, state: HardLabelState,
              rng: np.random.Generator) -> None:
        """One iteration: one block of signs flipped per active image, one engine call, keep what fools more."""
        cfg = self.config
        active = state.active
        n, _, h, w = images.shape
        if state.iteration == 0 and cfg.init == "auto":  # the other start as the first candidate
            signs = init_signs((active.size, *images.shape[1:]), AUTO_FIRST_CANDIDATE, rng)
        else:
            signs = self._flipped(state, active, images.shape)
        rows = None if active.size == n else active
        clean = images if rows is None else images[active]
        pred, correct, seconds = self._predict(engine, perturbed(clean, signs, cfg.radius), oracle, rows)
        state.engine_seconds += seconds
        better = correct < state.correct[active]
        won = active[better]
        state.signs[won] = signs[better]
        state.best_pred[won] = pred[better]
        state.correct[won] = correct[better]
        state.best_loss[won] = fooled_fraction(correct[better], state.labelled[won])
        state.queries[active] += 1
        state.iteration += 1
        spent = 1 + state.iteration
        if spent % cfg.curve_step == 0 or state.finished:
            state.curve.append(CurvePoint(spent, state.pixel_accuracy, state.mean_loss))

    def _flipped(self, state: HardLabelState, active: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """The signs of the best images of ``active`` with this iteration's block of each flipped (a copy)."""
        n, _, h, w = shape
        first = 1 if self.config.init == "auto" else 0
        channels = self.config.block_channels
        cycle, level, step = schedule_position(state.iteration - first, h, w, channels)
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


def _state_problem(state: HardLabelState, config: HardLabelConfig, images: np.ndarray, oracle: Oracle,
                   run_fingerprint: str, num_classes: int | None = None) -> str | None:
    """What breaks a guarantee if the run continued from ``state``, or None: the Square Attack's checks of the
    shared bookkeeping (``square.progress_problem``), signs that are all -1 or +1 (so the images are in the
    ε-ball and in [0, 1] by construction) and scores that are the fooled fractions of the counts. Not checked
    (it would cost a query per image): that best_pred is the engine's answer to the best images."""
    if not isinstance(state, HardLabelState) or state.config != config or state.fingerprint != run_fingerprint:
        return "belongs to other images, labels or parameters"
    problem = arrays_problem(state, {"signs": (np.int8, images.shape)}, images.shape)
    if problem is not None:
        return problem
    if not np.all(np.abs(state.signs) == 1):
        return "has signs other than -1 and +1"
    problem = progress_problem(state, config, oracle, num_classes)
    if problem is not None:
        return problem
    if not np.array_equal(state.best_loss, fooled_fraction(state.correct, state.labelled)):
        return "has scores that are not the fooled fractions of its correct-pixel counts"
    return None
