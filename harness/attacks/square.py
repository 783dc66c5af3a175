"""Square Attack, L∞ (Andriushchenko et al. 2020), for semantic segmentation, as in the paper.

A score-based black-box attack: it sends float32 [0, 1] images to an engine and reads logits,
nothing else (no model, no gradients). Per image it keeps the best perturbed image so far;
each iteration proposes one candidate per image still under attack (a square of side from
the p schedule, set to one ±ε value per channel), sends all candidates in one engine call,
and keeps a candidate when the loss oracle (harness/attacks/oracle.py) grows.

Two p schedules: ``paper``, the reference code's (written for 10000 queries on ImageNet-size
images, mapped onto the budget; at 64x64 it reaches 1-pixel squares after 40 % of a 1000-query
run), and ``scaled`` (:func:`scaled_side`), which sizes its steps by the image instead.

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

INITS = ("vertical", "horizontal")  # the paper's stripes (its Figure 4 runs both)
# Every start an attack takes: the stripes; checker: a pixel checkerboard of brightness (one sign per image), the
# highest spatial frequency, which the strided VGG features of FCN-8s alias (one query of it alone costs fcn8s-vgg16
# more accuracy than 1000 queries of the paper's Square Attack from stripes); auto: vertical stripes, and the
# checkerboard as the first candidate, so each image keeps the better of the two starts (one query of the budget).
STARTS = (*INITS, "checker", "auto")
AUTO_FIRST_CANDIDATE = "checker"
# The reference schedule halves p at these iterations of a 10000-query run; other budgets
# are mapped onto it proportionally.
P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
P_REFERENCE_BUDGET = 10000
P_SCHEDULES = ("paper", "scaled")
# A square's colour: rgb, one sign of ±ε per channel (the paper's 8 colours); grey, one sign for all channels (a
# brightness step, 2 colours), which moves the models here far more per query.
COLOURS = ("rgb", "grey")
# Options added after the paper's attack, with the paper's values: left out of as_dict at those values, so the
# paper's runs keep the records, record keys (the regression check's) and saved states they had before.
_LATER_OPTIONS = {"p_schedule": "paper", "colour": "rgb"}
# The scaled schedule's smallest square: a 1-pixel change hardly moves a model whose features have stride 8 or more.
SCALED_MIN_SIDE = 3
# A candidate window "differs" from the best one when some value moves by at least this.
_UNCHANGED = 1e-7
# The smallest eps (0-255 scale). A channel's two colours x - eps/255 and x + eps/255 must differ by far more than
# 2 * _UNCHANGED after float32 rounding at every value in [0, 1] (float32's spacing below 1 is 6e-8), or no colour
# can change a square and the redraw below could never succeed; 1e-3 (3.9e-6 in [0, 1] units) leaves a 15x margin.
MIN_EPS = 1e-3
# Draws of a square's colour per candidate. With eps >= MIN_EPS at most one of the 2**3 colours (of the 2 grey ones)
# leaves a square unchanged, so more draws than this happen with probability 8**-32 (2**-32); then the opposite
# colour, which differs, is taken.
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
    init: the start (STARTS: stripes, or a checkerboard); loss: oracle name; seed: the random stream of the run;
    curve_every: queries between curve points (0: about DEFAULT_CURVE_POINTS points);
    p_schedule: ``paper`` (:func:`p_fraction`) or ``scaled`` (:func:`scaled_side`); colour: of the squares,
    ``rgb`` (the paper's) or ``grey`` (COLOURS).
    """

    eps: float
    queries: int
    p_init: float = 0.05
    init: str = "vertical"
    loss: str = "ce"
    seed: int = 0
    curve_every: int = 0
    p_schedule: str = "paper"
    colour: str = "rgb"

    def validate(self) -> None:
        check_eps(self.eps)
        if self.eps < MIN_EPS:
            raise HarnessError(f"eps {self.eps:g} is below the Square Attack's minimum {MIN_EPS:g} (0-255 scale): "
                               "a step that small is lost in float32 rounding of [0, 1] pixels; give a larger --eps")
        if self.queries < 1:
            raise HarnessError(f"the query budget must be >= 1, got {self.queries}")
        if not 0 < self.p_init <= 1:
            raise HarnessError(f"p_init must be in (0, 1], got {self.p_init}")
        if self.init not in STARTS:
            raise HarnessError(f"unknown init {self.init!r}; choose from: {', '.join(STARTS)}")
        if self.loss not in ORACLES:
            raise HarnessError(f"unknown loss {self.loss!r}; choose from: {', '.join(ORACLES)}")
        if self.curve_every < 0:
            raise HarnessError(f"curve_every must be >= 0, got {self.curve_every}")
        if self.p_schedule not in P_SCHEDULES:
            raise HarnessError(f"unknown p schedule {self.p_schedule!r}; choose from: {', '.join(P_SCHEDULES)}")
        if self.colour not in COLOURS:
            raise HarnessError(f"unknown square colour {self.colour!r}; choose from: {', '.join(COLOURS)}")

    @property
    def radius(self) -> float:
        """ε in [0, 1] pixel units, the scale of the images."""
        return self.eps / 255.0

    @property
    def curve_step(self) -> int:
        return self.curve_every or max(1, self.queries // DEFAULT_CURVE_POINTS)

    @property
    def first_square(self) -> int:
        """The first iteration that places a square: 1 with ``init = auto`` (iteration 0 tries the other start)."""
        return 1 if self.init == "auto" else 0

    def side(self, iteration: int, height: int, width: int) -> int:
        """Side in pixels of the squares of square update ``iteration`` (0-based) on ``height`` x ``width`` images."""
        iteration -= self.first_square
        if self.p_schedule == "scaled":
            return scaled_side(self.p_init, iteration, height, width)
        return square_side(p_fraction(self.p_init, iteration, self.queries), height, width)

    def as_dict(self) -> dict[str, Any]:
        """The parameters, without the options added after the paper's attack where they have the paper's values
        (``_LATER_OPTIONS``)."""
        return {k: v for k, v in asdict(self).items() if k not in _LATER_OPTIONS or v != _LATER_OPTIONS[k]}


@dataclass
class CurvePoint:
    """The run after ``queries`` queries per image: pixel accuracy (fraction of all labelled
    pixels) of the best images and the mean of the per-image best losses."""

    queries: int
    pixel_accuracy: float
    mean_loss: float


class RunProgress:
    """What a black-box run's state reports, from its ``config.queries``, ``queries``, ``correct``, ``labelled``
    and ``best_loss`` (shared by the Square and the hard-label attacks' states)."""

    config: Any
    queries: np.ndarray
    correct: np.ndarray
    labelled: np.ndarray
    best_loss: np.ndarray

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


@dataclass
class SquareState(RunProgress):
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


def has_scores(engine: object) -> bool:
    """Whether ``engine`` returns scores: its ``has_scores`` (engines/base.py; False for a class-map target),
    True for an object without one (any ``infer`` returning logits)."""
    return getattr(engine, "has_scores", True) is not False


def require_scores(engine: object, attack: str) -> None:
    """A one-line HarnessError when ``engine`` returns class maps only: name what still applies."""
    if not has_scores(engine):
        raise HarnessError(f"{attack} reads the model's scores, but this target returns class maps only "
                           "(card output.kind = class_map); what applies to it: blackbox --attack hardlabel "
                           "(decision-based, class maps only), eval, transfer")


def p_fraction(p_init: float, iteration: int, budget: int) -> float:
    """Fraction of the image's pixels a square covers at square update ``iteration`` (0-based)
    of a run with ``budget`` queries: the reference schedule, p_init halved at each mark of
    P_HALVINGS passed, after rescaling the iteration to a 10000-query run."""
    scaled = int(iteration / budget * P_REFERENCE_BUDGET)
    return p_init / 2 ** sum(scaled > mark for mark in P_HALVINGS)


def scaled_side(p_init: float, iteration: int, height: int, width: int) -> int:
    """Side in pixels of the squares of square update ``iteration`` (0-based) in the ``scaled`` schedule.

    p starts at ``p_init`` and halves each time the updates spent at the current side reach the number of
    squares of that side that tile the image (ceil(H / side) * ceil(W / side)): each side gets about one
    cover of the image, whatever the image size and budget, so a small image does not reach 1-pixel squares
    early. The side never goes below SCALED_MIN_SIDE (nor the image: ``square_side``'s bounds)."""
    floor = square_side(1.0, height, width) if min(height, width) <= SCALED_MIN_SIDE else SCALED_MIN_SIDE
    p, start = p_init, 0
    side = max(square_side(p, height, width), floor)
    # Each halving shrinks the side by about 1/sqrt(2) until the floor: a few dozen halvings at most.
    for _ in range(64):
        tiles = math.ceil(height / side) * math.ceil(width / side)
        if side <= floor or iteration < start + tiles:
            break
        start += tiles
        p /= 2
        side = max(square_side(p, height, width), floor)
    return side


def square_side(p: float, height: int, width: int) -> int:
    """Side in pixels of a square covering a fraction ``p`` of an image, in [1, min(H, W) - 1]."""
    return min(max(int(round(math.sqrt(p * height * width))), 1), max(min(height, width) - 1, 1))


def init_signs(shape: tuple[int, int, int, int], init: str, rng: np.random.Generator) -> np.ndarray:
    """The initial perturbation's signs, int8 (N, C, H, W) of -1 and +1: stripes of width one with one sign per
    stripe and channel (vertical stripes are columns), or a checkerboard of pixels, (-1)^(row + column) times
    one sign per image for all channels (brightness: it moves a model more than one sign per channel does).
    Each sign is a fair draw of ``rng``."""
    n, c, h, w = shape
    init = "vertical" if init == "auto" else init
    if init == "checker":
        board = 1 - 2 * (np.add.outer(np.arange(h), np.arange(w)) % 2).astype(np.int8)
        draws, pattern = (n, 1, 1, 1), board
    else:
        draws, pattern = ((n, c, 1, w) if init == "vertical" else (n, c, h, 1)), np.int8(1)
    signs = 2 * rng.integers(0, 2, size=draws, dtype=np.int8) - 1
    return np.ascontiguousarray(np.broadcast_to(signs * pattern, shape), dtype=np.int8)


def stripe_init(images: np.ndarray, radius: float, init: str, rng: np.random.Generator) -> np.ndarray:
    """``images`` float32 (N, 3, H, W) plus radius ([0, 1] units) times :func:`init_signs`, clipped to [0, 1]."""
    return np.clip(images + np.float32(radius) * init_signs(images.shape, init, rng), 0, 1).astype(np.float32)


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
        require_scores(engine, "the Square Attack")
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
        if state.iteration < cfg.first_square:
            candidates = stripe_init(clean, cfg.radius, AUTO_FIRST_CANDIDATE, rng)
        else:
            candidates = state.x_best.copy() if rows is None else state.x_best[rows]
            self._place_squares(candidates, clean, cfg.side(state.iteration, *images.shape[2:]), rng)
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
        random position (the last row and column included) set to x ± ε/255 (one sign per channel, or one for all
        channels with colour grey),
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
        channels = 1 if self.config.colour == "grey" else c
        for _ in range(MAX_REDRAWS):
            signs = _signed(self.config.radius, rng, (redraw.size, channels, 1, 1))  # one colour per image
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
    if state.config != config or state.fingerprint != run_fingerprint:
        return "belongs to other images, labels or parameters"
    problem = arrays_problem(state, {"x_best": (np.float32, images.shape)}, images.shape)
    if problem is not None:
        return problem
    radius = np.float32(config.radius)  # the attack's own float32 arithmetic gives the exact bounds
    low, high = np.clip(images - radius, 0, 1), np.clip(images + radius, 0, 1)
    outside = ~((low <= state.x_best) & (state.x_best <= high))
    if outside.any():
        return (f"has {int(outside.sum())} values of x_best outside the eps-ball of {config.eps:g}/255 around the "
                "clean images or outside [0, 1]")
    if not np.isfinite(state.best_loss).all():
        return "has non-finite best losses"
    return progress_problem(state, config, oracle, num_classes)


def arrays_problem(state: Any, perturbation: dict[str, tuple[type, tuple[int, ...]]],
                   shape: tuple[int, ...]) -> str | None:
    """Why the arrays of a black-box run's ``state`` on images of ``shape`` (N, 3, H, W) are not of the dtypes and
    shapes the run gives (``perturbation``: the attack's own, name -> (dtype, shape)), or None."""
    n, _, h, w = shape
    for name, (dtype, expected) in (*perturbation.items(), ("best_loss", (np.float64, (n,))),
                                    ("best_pred", (np.uint8, (n, h, w))), ("correct", (np.int64, (n,))),
                                    ("labelled", (np.int64, (n,))), ("queries", (np.int64, (n,)))):
        array = getattr(state, name)
        if not isinstance(array, np.ndarray) or array.dtype != dtype or array.shape != expected:
            found = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
            return f"has {name} {found}, expected {np.dtype(dtype)} {expected}"
    return None


def progress_problem(state: Any, config: Any, oracle: Oracle, num_classes: int | None = None) -> str | None:
    """What breaks a guarantee in the bookkeeping every black-box run shares (a Square or hard-label state whose
    arrays ``arrays_problem`` passed), or None: labelled and correct-pixel counts of the labels and class maps,
    the classes, queries in [1, budget] that ``iteration`` gives, the generator state, the curve, the timings."""
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
