"""Square Attack, L∞ (Andriushchenko et al. 2020), for semantic segmentation, as in the paper.

A score-based black-box attack: it sends float32 [0, 1] images to an engine and reads logits,
nothing else (no model, no gradients). Per image it keeps the best perturbed image so far;
each iteration proposes one candidate per image still under attack (a square of side from
the reference p schedule, set to one ±ε value per channel), sends all candidates in one
engine call, and keeps a candidate when the loss oracle (harness/attacks/oracle.py) grows.

Template-method split (DESIGN.md): :meth:`SquareAttack.run` validates, seeds, times and
records; :meth:`SquareAttack._step` is the algorithm of one iteration.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from harness.attacks.base import check_eps
from harness.attacks.oracle import ORACLES, Oracle
from harness.data.base import IGNORE_INDEX
from harness.errors import HarnessError

INITS = ("vertical", "horizontal")
# The reference schedule halves p at these iterations of a 10000-query run; other budgets
# are mapped onto it proportionally.
P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
P_REFERENCE_BUDGET = 10000
# A candidate window "differs" from the best one when some value moves by at least this.
_UNCHANGED = 1e-7
# The smallest eps (0-255 scale). A channel's two colours x - eps/255 and x + eps/255 must differ by far more than
# 2 * _UNCHANGED after float32 rounding at every value in [0, 1] (float32's spacing below 1 is 6e-8), or no colour
# can change a square and the redraw below could never succeed; 1e-3 (3.9e-6 in [0, 1] units) leaves a 15x margin.
MIN_EPS = 1e-3
# Draws of a square's colour per candidate. With eps >= MIN_EPS at most one of the 2**3 colours leaves a square
# unchanged, so more draws than this happen with probability 8**-32; the run is the same as with no limit.
MAX_REDRAWS = 32
DEFAULT_CURVE_POINTS = 50


class QueryEngine(Protocol):
    """All the attack needs: ``infer(images float32 (N, 3, H, W) in [0, 1]) -> logits float32
    (N, K, H, W)``. Every Engine of engines/base.py qualifies; so does any object with that method."""

    def infer(self, images: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class SquareConfig:
    """Parameters of one run.

    eps: L∞ radius on the 0-255 pixel scale (8 means 8/255), as for the white-box attacks;
    queries: per-image budget, the initial query included; p_init: fraction of the image a
    square covers at the start;
    init: stripe orientation; loss: oracle name; seed: the random stream of the whole run;
    curve_every: queries between curve points (0: about DEFAULT_CURVE_POINTS points).
    """

    eps: float
    queries: int
    p_init: float = 0.05
    init: str = "vertical"
    loss: str = "ce"
    seed: int = 0
    curve_every: int = 0

    def validate(self) -> None:
        check_eps(self.eps)
        if self.eps < MIN_EPS:
            raise HarnessError(f"eps {self.eps:g} is below the Square Attack's minimum {MIN_EPS:g} (0-255 scale): "
                               "a step that small is lost in float32 rounding of [0, 1] pixels; give a larger --eps")
        if self.queries < 1:
            raise HarnessError(f"the query budget must be >= 1, got {self.queries}")
        if not 0 < self.p_init <= 1:
            raise HarnessError(f"p_init must be in (0, 1], got {self.p_init}")
        if self.init not in INITS:
            raise HarnessError(f"unknown init {self.init!r}; choose from: {', '.join(INITS)}")
        if self.loss not in ORACLES:
            raise HarnessError(f"unknown loss {self.loss!r}; choose from: {', '.join(ORACLES)}")
        if self.curve_every < 0:
            raise HarnessError(f"curve_every must be >= 0, got {self.curve_every}")

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
class CurvePoint:
    """The run after ``queries`` queries per image: pixel accuracy (fraction of all labelled
    pixels) of the best images and the mean of the per-image best losses."""

    queries: int
    pixel_accuracy: float
    mean_loss: float


@dataclass
class SquareState:
    """Everything a run needs to continue, and everything it reports.

    x_best float32 (N, 3, H, W): best image per image so far (the adversarial images);
    best_loss float64 (N,); best_pred uint8 (N, H, W): the engine's class map of x_best;
    correct int64 (N,): labelled pixels best_pred gets right; labelled int64 (N,);
    queries int64 (N,): engine queries spent per image (<= config.queries);
    iteration: square updates done (the initial query is not one); rng: the generator state;
    engine_seconds / seconds: wall time inside ``infer`` / of the whole run, summed over resumes.
    fingerprint: sha256 of the images, labels and config, checked on resume.
    """

    config: SquareConfig
    x_best: np.ndarray
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

    @property
    def active(self) -> np.ndarray:
        """Indices of images still under attack: budget left and some pixel still right."""
        return np.flatnonzero((self.queries < self.config.queries) & (self.correct > 0))

    @property
    def finished(self) -> bool:
        return self.active.size == 0

    @property
    def pixel_accuracy(self) -> float:
        return float(self.correct.sum() / self.labelled.sum())

    @property
    def mean_loss(self) -> float:
        return float(self.best_loss.mean())


def p_fraction(p_init: float, iteration: int, budget: int) -> float:
    """Fraction of the image's pixels a square covers at square update ``iteration`` (0-based)
    of a run with ``budget`` queries: the reference schedule, p_init halved at each mark of
    P_HALVINGS passed, after rescaling the iteration to a 10000-query run."""
    scaled = int(iteration / budget * P_REFERENCE_BUDGET)
    return p_init / 2 ** sum(scaled > mark for mark in P_HALVINGS)


def square_side(p: float, height: int, width: int) -> int:
    """Side in pixels of a square covering a fraction ``p`` of an image, in [1, min(H, W) - 1]."""
    return min(max(int(round(math.sqrt(p * height * width))), 1), max(min(height, width) - 1, 1))


def stripe_init(images: np.ndarray, radius: float, init: str, rng: np.random.Generator) -> np.ndarray:
    """Stripes of width one, each with one colour in {-radius, +radius} per channel ([0, 1] units),
    added to ``images`` float32 (N, 3, H, W) and clipped to [0, 1]. Vertical stripes are columns."""
    n, c, h, w = images.shape
    shape = (n, c, 1, w) if init == "vertical" else (n, c, h, 1)
    delta = _signed(radius, rng, shape)
    return np.clip(images + delta, 0, 1).astype(np.float32)


def fingerprint(images: np.ndarray, labels: np.ndarray, config: SquareConfig) -> str:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    digest.update(repr(sorted(config.as_dict().items())).encode())
    return digest.hexdigest()


def _signed(radius: float, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """float32 array of ``shape`` whose values are -radius or +radius, each with probability 1/2."""
    return np.array([-radius, radius], dtype=np.float32)[rng.integers(0, 2, size=shape, dtype=np.int8)]


class SquareAttack:
    """``SquareAttack(config).run(engine, images, labels)``: the L∞ Square Attack of the paper.

    ``images`` float32 (N, 3, H, W) in [0, 1]; ``labels`` int64 (N, H, W), 255 = ignore.
    Guarantees: per image at most ``config.queries`` images are sent to the engine, the
    initial query included; one ``infer`` call per iteration carries one candidate for each
    image still under attack; ``x_best`` stays within ε/255 (L∞) of ``images`` and in [0, 1];
    each image's best loss never decreases. The same seed, inputs and engine give the same run,
    and a run continued from a saved state (``state=``) is the run it would have been.
    """

    def __init__(self, config: SquareConfig) -> None:
        config.validate()
        self.config = config

    def run(self, engine: QueryEngine, images: np.ndarray, labels: np.ndarray, state: SquareState | None = None,
            on_iteration: Callable[[SquareState], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> SquareState:
        """Attack until every image is fooled on all its pixels or has spent its budget.

        ``state``: a saved state of this same run to continue from; a HarnessError when its fingerprint does not
        match or it breaks a guarantee of the class (:meth:`state_problem`).
        ``on_iteration(state)`` runs after the initial query and after every iteration (display,
        saving). ``should_stop()`` is asked between iterations: True ends the call early with a
        consistent state that can be saved and continued.
        """
        images, labels = self._validate(images, labels)
        expected = fingerprint(images, labels, self.config)
        oracle = Oracle(self.config.loss, labels)
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
                raise HarnessError(f"the saved Square Attack state {problem}")
            rng = np.random.default_rng()
            rng.bit_generator.state = state.rng
        # Each iteration spends one query of every image still attacked, all of which have spent 1 + iteration:
        # after queries - 1 iterations every image has spent its budget.
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

    def state_problem(self, state: SquareState, images: np.ndarray, labels: np.ndarray,
                      num_classes: int | None = None) -> str | None:
        """Why ``state`` cannot continue this run on ``images`` and ``labels``, as a phrase ("has ..."), or None
        when it keeps every guarantee of the class (``run`` refuses such a state with a HarnessError).
        ``num_classes``: the engine's number of classes, when known (``run`` learns it only from a query)."""
        images, labels = self._validate(images, labels)
        return _state_problem(state, self.config, images, Oracle(self.config.loss, labels),
                              fingerprint(images, labels, self.config), num_classes)

    def _validate(self, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(images, np.ndarray) or images.dtype != np.float32 or images.ndim != 4 \
                or images.shape[1] != 3 or len(images) < 1:
            raise HarnessError("images must be a float32 numpy array (N, 3, H, W) with N >= 1")
        if images.min() < 0 or images.max() > 1:
            raise HarnessError("images must lie in [0, 1]")
        if min(images.shape[2:]) < 2:
            raise HarnessError(f"images of {images.shape[2]}x{images.shape[3]} pixels are too small for squares")
        if not isinstance(labels, np.ndarray) or labels.shape != (images.shape[0], *images.shape[2:]):
            raise HarnessError(f"labels must be (N, H, W) = {(images.shape[0], *images.shape[2:])}")
        return np.ascontiguousarray(images), labels.astype(np.int64)

    def _query(self, engine: QueryEngine, batch: np.ndarray, state: SquareState | None) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        logits = np.asarray(engine.infer(batch), dtype=np.float32)
        seconds = time.perf_counter() - t0
        if logits.ndim != 4 or logits.shape[0] != len(batch) or logits.shape[2:] != batch.shape[2:]:
            raise HarnessError(f"the engine returned logits of shape {logits.shape} for images {batch.shape}; "
                               "expected (N, K, H, W)")
        if state is not None:
            state.engine_seconds += seconds
        return logits, seconds

    def _initial(self, engine: QueryEngine, images: np.ndarray, oracle: Oracle, run_fingerprint: str,
                 rng: np.random.Generator) -> SquareState:
        cfg = self.config
        x_init = stripe_init(images, cfg.radius, cfg.init, rng)
        logits, seconds = self._query(engine, x_init, None)
        pred, correct = oracle.predictions(logits)
        state = SquareState(
            config=cfg, x_best=x_init, best_loss=oracle.loss(logits), best_pred=pred,
            correct=correct, labelled=oracle.labelled.copy(),
            queries=np.ones(len(images), dtype=np.int64), iteration=0, rng=rng.bit_generator.state,
            fingerprint=run_fingerprint, engine_seconds=seconds)
        state.curve.append(CurvePoint(1, state.pixel_accuracy, state.mean_loss))
        return state

    def _step(self, engine: QueryEngine, images: np.ndarray, oracle: Oracle, state: SquareState,
              rng: np.random.Generator) -> None:
        """One iteration: a square candidate per active image, one engine call, keep improvements."""
        cfg = self.config
        active = state.active
        # While every image is attacked, views spare copying the clean images each iteration.
        rows = None if active.size == len(images) else active
        clean = images if rows is None else images[rows]
        # The candidates are built in place, in a copy of the best images.
        candidates = state.x_best.copy() if rows is None else state.x_best[rows]
        side = square_side(p_fraction(cfg.p_init, state.iteration, cfg.queries), *images.shape[2:])
        self._place_squares(candidates, clean, side, rng)
        logits, _ = self._query(engine, candidates, state)
        loss = oracle.loss(logits, rows)
        better = loss > state.best_loss[active]
        won = active[better]
        state.x_best[won] = candidates[better]
        state.best_loss[won] = loss[better]
        state.best_pred[won], state.correct[won] = oracle.predictions(logits[better], won)
        state.queries[active] += 1
        state.iteration += 1
        spent = 1 + state.iteration
        if spent % cfg.curve_step == 0 or state.finished:
            state.curve.append(CurvePoint(spent, state.pixel_accuracy, state.mean_loss))

    def _place_squares(self, best: np.ndarray, images: np.ndarray, side: int, rng: np.random.Generator) -> None:
        """Turn each best image (in place) into its candidate: one square of ``side`` at a uniformly
        random position (the last row and column included) set to x ± ε/255 (one sign per channel),
        clipped to [0, 1], its colour redrawn until the square changes the best image (at most MAX_REDRAWS
        draws; a square still unchanged then takes the opposite colour, which differs in every channel).
        Outside the squares the best images, already in the ball, stay as they are."""
        n, c, h, w = images.shape
        rows = rng.integers(0, h - side + 1, size=n)
        cols = rng.integers(0, w - side + 1, size=n)
        # Index arrays that cut each image's own square: windows are (n, c, side, side).
        offsets = np.arange(side)
        window = (np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None],
                  (rows[:, None] + offsets)[:, None, :, None], (cols[:, None] + offsets)[:, None, None, :])
        clean, current = images[window], best[window]
        squares = np.empty_like(clean)
        redraw = np.arange(n)
        for _ in range(MAX_REDRAWS):
            signs = _signed(self.config.radius, rng, (redraw.size, c, 1, 1))  # one colour per image and channel
            # x ± ε lies on the ε-ball's boundary already: only [0, 1] can cut it.
            squares[redraw] = np.clip(clean[redraw] + signs, 0, 1)
            unchanged = np.all(np.abs(squares[redraw] - current[redraw]) < _UNCHANGED, axis=(1, 2, 3))
            redraw = redraw[unchanged]
            if not redraw.size:
                break
        else:
            squares[redraw] = np.clip(clean[redraw] - signs[unchanged], 0, 1)
        best[window] = squares


def _state_problem(state: SquareState, config: SquareConfig, images: np.ndarray, oracle: Oracle,
                   run_fingerprint: str, num_classes: int | None = None) -> str | None:
    """What breaks a guarantee if the run continued from ``state``, or None. Checks all that holds after any
    iteration of the run: shapes and dtypes; queries in [1, budget], 1 + iteration on every image still attacked,
    fewer only on images fooled on every pixel; x_best within the float32 eps-ball around ``images`` (exactly as
    the attack computes it) and in [0, 1]; finite best losses; pixel counts that are those of best_pred; a PCG64
    generator state; the curve's query marks, values and a mean loss that never decreases. Not checked (it would
    cost a query per image): that best_loss and best_pred are the engine's answer to x_best."""
    n, _, h, w = images.shape
    if state.config != config or state.fingerprint != run_fingerprint:
        return "belongs to other images, labels or parameters"
    for name, dtype, shape in (("x_best", np.float32, images.shape), ("best_loss", np.float64, (n,)),
                               ("best_pred", np.uint8, (n, h, w)), ("correct", np.int64, (n,)),
                               ("labelled", np.int64, (n,)), ("queries", np.int64, (n,))):
        array = getattr(state, name)
        if not isinstance(array, np.ndarray) or array.dtype != dtype or array.shape != shape:
            found = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
            return f"has {name} {found}, expected {np.dtype(dtype)} {shape}"
    radius = np.float32(config.radius)  # the attack's own float32 arithmetic gives the exact bounds
    low, high = np.clip(images - radius, 0, 1), np.clip(images + radius, 0, 1)
    outside = ~((low <= state.x_best) & (state.x_best <= high))
    if outside.any():
        return (f"has {int(outside.sum())} values of x_best outside the eps-ball of {config.eps:g}/255 around the "
                "clean images or outside [0, 1]")
    if not np.isfinite(state.best_loss).all():
        return "has non-finite best losses"
    if not np.array_equal(state.labelled, oracle.labelled):
        return "counts other labelled pixels than the labels have"
    classes = IGNORE_INDEX if num_classes is None else min(num_classes, IGNORE_INDEX)
    if state.best_pred.max() >= classes:
        return f"has class {int(state.best_pred.max())} in best_pred (classes are below {classes})"
    if not np.array_equal(state.correct, (state.best_pred == oracle.labels).sum(axis=(1, 2), dtype=np.int64)):
        return "has correct-pixel counts that are not those of its class maps"
    iteration = state.iteration
    if type(iteration) is not int or not 0 <= iteration < config.queries:
        return f"has iteration {short_repr(iteration)}, expected an integer in [0, {config.queries - 1}]"
    if state.queries.min() < 1 or state.queries.max() > config.queries:
        return (f"has images with {int(state.queries.min())} to {int(state.queries.max())} queries spent, "
                f"outside [1, {config.queries}] (the budget)")
    if state.queries.max() != 1 + iteration or np.any((state.queries < 1 + iteration) & (state.correct > 0)):
        return f"has queries per image that iteration {iteration} cannot give"
    problem = _rng_problem(state.rng) or _curve_problem(state, config)
    if problem is not None:
        return problem
    timings = (state.engine_seconds, state.seconds)
    if not all(type(t) is float and math.isfinite(t) for t in timings) or not 0 <= timings[0] <= timings[1]:
        return f"has timings {short_repr(timings)}, expected 0 <= engine seconds <= seconds"
    return None


def short_repr(value: Any, limit: int = 120) -> str:
    """``repr(value)`` cut to ``limit`` characters: a message shows what a file holds, however long it is."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def _rng_problem(rng_state: Any) -> str | None:
    """None when ``rng_state`` is a state of numpy's PCG64 exactly as it reports one (odd increment), else why not."""
    generator = np.random.default_rng()
    try:
        generator.bit_generator.state = rng_state
        inc = rng_state["state"]["inc"]
    except (TypeError, ValueError, KeyError, OverflowError):
        inc = None
    if type(inc) is not int or inc % 2 == 0 or _canonical(generator.bit_generator.state) != _canonical(rng_state):
        return "has a random generator state that is not a PCG64 state"
    return None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _curve_problem(state: SquareState, config: SquareConfig) -> str | None:
    """None when the curve has a point at exactly the queries the run records one at, each with a pixel
    accuracy in [0, 1] and a finite mean loss that never decreases, the last one at most the state's."""
    spent = 1 + state.iteration
    marks = np.arange(2, spent + 1)
    expected = [1, *marks[marks % config.curve_step == 0].tolist()]
    if state.finished and spent > 1 and expected[-1] != spent:
        expected.append(spent)
    points = state.curve
    if not isinstance(points, list) or not all(isinstance(p, CurvePoint) for p in points) \
            or [p.queries for p in points] != expected or not all(type(p.queries) is int for p in points):
        return "has a curve whose points are not at the queries the run records them at"
    values = [(p.pixel_accuracy, p.mean_loss) for p in points]
    if not all(type(a) in (int, float) and type(b) in (int, float) and 0 <= a <= 1 and math.isfinite(b)
               for a, b in values):
        return "has curve points with a pixel accuracy outside [0, 1] or a non-finite loss"
    losses = [b for _, b in values]
    if any(b < a for a, b in zip(losses, losses[1:], strict=False)) or losses[-1] > state.mean_loss:
        return "has a curve whose mean loss decreases or exceeds the state's"
    if points[-1].queries == spent and (points[-1].pixel_accuracy, points[-1].mean_loss) != \
            (state.pixel_accuracy, state.mean_loss):
        return "has a last curve point that is not the state's accuracy and loss"
    return None
