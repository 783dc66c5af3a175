"""Square Attack, L∞ (Andriushchenko et al. 2020), for semantic segmentation, as in the paper.

A score-based black-box attack: it sends float32 [0, 1] images to an engine and reads logits,
nothing else (no model, no gradients). Per image it keeps the best perturbed image so far;
each iteration proposes one candidate per image still under attack (a square of side from
the p schedule, set to one ±ε value per channel), sends all candidates in one engine call,
and keeps a candidate when the loss oracle (harness/attacks/oracle.py) grows.

Two p schedules: ``paper``, the reference code's (written for 10000 queries on ImageNet-size
images, mapped onto the budget; at 64x64 it reaches 1-pixel squares after 40 % of a 1000-query
run), and ``scaled`` (:func:`scaled_side`), which sizes its steps by the image instead.

Template-method split (DESIGN.md): the budgeted query loop, its bookkeeping and resumable states are
harness/attacks/query_loop.py's (shared with the hard-label attack); :class:`SquareAttack` gives only its start
(:meth:`SquareAttack._start`) and one iteration's candidates and acceptance (:meth:`SquareAttack._improve`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from harness.attacks.oracle import ORACLES, Oracle
from harness.attacks.query_loop import MIN_EPS as MIN_EPS  # re-exported: the suite's config checks eps against it
from harness.attacks.query_loop import (
    Answers,
    BlackBoxAttack,
    BudgetConfig,
    RunProgress,
    progress_problem,
    sharded_query,
    timed,
)
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
# A candidate window "differs" from the best one when some value moves by at least this (MIN_EPS keeps a channel's
# two colours far further apart).
_UNCHANGED = 1e-7
# Draws of a square's colour per candidate. With eps >= MIN_EPS at most one of the 2**3 colours (of the 2 grey ones)
# leaves a square unchanged, so more draws than this happen with probability 8**-32 (2**-32); then the opposite
# colour, which differs, is taken.
MAX_REDRAWS = 32


class QueryEngine(Protocol):
    """All the attack needs: ``infer(images float32 (N, 3, H, W) in [0, 1]) -> logits float32
    (N, K, H, W)``. Every Engine of engines/base.py qualifies; so does any object with that method."""

    def infer(self, images: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class SquareConfig(BudgetConfig):
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
        self.check_budget("Square Attack")
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

    def side(self, iteration: int, height: int, width: int) -> int:
        """Side in pixels of the squares of square update ``iteration`` (0-based) on ``height`` x ``width`` images."""
        iteration -= self.first_update
        if self.p_schedule == "scaled":
            return scaled_side(self.p_init, iteration, height, width)
        return square_side(p_fraction(self.p_init, iteration, self.queries), height, width)

    def as_dict(self) -> dict[str, Any]:
        """The parameters, without the options added after the paper's attack where they have the paper's values
        (``_LATER_OPTIONS``)."""
        return {k: v for k, v in asdict(self).items() if k not in _LATER_OPTIONS or v != _LATER_OPTIONS[k]}


@dataclass(kw_only=True)
class SquareState(RunProgress):
    """Everything a run needs to continue, and everything it reports: the bookkeeping of
    :class:`~harness.attacks.query_loop.RunProgress` (best_loss: the oracle's; its ``engine_seconds``: inside
    ``infer``) and x_best float32 (N, 3, H, W), the best image per image so far (the adversarial images).
    """

    config: SquareConfig
    x_best: np.ndarray


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
    # A copy always: a draw already of ``shape`` (stripes of one-pixel-high or -wide images) would otherwise come
    # back as broadcast_to's read-only view, and the hard-label attack writes its best signs in place.
    return np.array(np.broadcast_to(signs * pattern, shape), dtype=np.int8)


def stripe_init(images: np.ndarray, radius: float, init: str, rng: np.random.Generator) -> np.ndarray:
    """``images`` float32 (N, 3, H, W) plus radius ([0, 1] units) times :func:`init_signs`, clipped to [0, 1]."""
    return np.clip(images + np.float32(radius) * init_signs(images.shape, init, rng), 0, 1).astype(np.float32)


def _signed(radius: float, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """float32 array of ``shape`` whose values are -radius or +radius, each with probability 1/2."""
    return np.array([-radius, radius], dtype=np.float32)[rng.integers(0, 2, size=shape, dtype=np.int8)]


class SquareAttack(BlackBoxAttack[SquareConfig, SquareState]):
    """``SquareAttack(config).run(engine, images, labels)``: the L∞ Square Attack of the paper.

    The guarantees of :class:`~harness.attacks.query_loop.BlackBoxAttack`, through ``infer`` (logits); the best
    never getting worse: each image's best loss never decreases.
    """

    title = "Square Attack"
    state_type = SquareState
    perturbation = ("x_best", np.float32)
    min_side = 2
    pieces = "squares"

    def _check_engine(self, engine: QueryEngine) -> None:
        require_scores(engine, "the Square Attack")
        if not callable(getattr(engine, "infer", None)):
            raise HarnessError("the Square Attack needs an engine with infer(images) -> logits")

    def _loss_name(self) -> str:
        return self.config.loss

    def _query(self, engine: QueryEngine, batch: np.ndarray) -> tuple[np.ndarray, float]:
        answer, seconds = timed(engine.infer, batch)
        logits = np.asarray(answer, dtype=np.float32)
        if logits.ndim != 4 or logits.shape[0] != len(batch) or logits.shape[2:] != batch.shape[2:]:
            raise HarnessError(f"the engine returned logits of shape {logits.shape} for images {batch.shape}; "
                               "expected (N, K, H, W)")
        return logits, seconds

    def _start(self, engine: QueryEngine, images: np.ndarray, oracle: Oracle,
               rng: np.random.Generator) -> tuple[dict[str, np.ndarray], float]:
        x_init = stripe_init(images, self.config.radius, self.config.init, rng)
        answers, seconds = self._scored(engine, lambda part: x_init[part], len(images), oracle, None)
        loss, correct = answers.small
        return {"x_best": x_init, "best_loss": loss, "best_pred": answers.maps(np.ones(len(images), bool)),
                "correct": correct}, seconds

    def _improve(self, engine: QueryEngine, images: np.ndarray, oracle: Oracle, state: SquareState,
                 active: np.ndarray, rng: np.random.Generator) -> float:
        """A square candidate per active image, one engine call, keep those whose loss grows."""
        cfg = self.config
        rows = None if active.size == len(images) else active
        if state.iteration < cfg.first_update:  # the other start as the first candidate
            # While every image is attacked, a view spares copying the clean images.
            first = stripe_init(images if rows is None else images[rows], cfg.radius, AUTO_FIRST_CANDIDATE, rng)

            def candidates(part: slice) -> np.ndarray:
                return first[part]

            def keep(better: np.ndarray) -> None:
                state.x_best[active[better]] = first[better]
        else:
            # A candidate is its best image with one square changed: only the squares are drawn for every image
            # (the random stream is the run's), the whole images only for the candidates this rank sends.
            squares = self._draw_squares(state.x_best, images, active, cfg.side(state.iteration, *images.shape[2:]),
                                         rng)

            def candidates(part: slice) -> np.ndarray:
                built = state.x_best[active[part]]  # a copy: fancy indexing
                built[squares.window(np.arange(len(built)), part)] = squares.values[part]
                return built

            def keep(better: np.ndarray) -> None:
                # The best images of the winners become their candidates: only their squares change.
                state.x_best[squares.window(active[better], better)] = squares.values[better]
        answers, seconds = self._scored(engine, candidates, active.size, oracle, rows)
        loss, correct = answers.small
        better = loss > state.best_loss[active]
        keep(better)
        won = active[better]
        state.best_loss[won] = loss[better]
        state.best_pred[won], state.correct[won] = answers.maps(better), correct[better]
        return seconds

    def _scored(self, engine: QueryEngine, candidates: Callable[[slice], np.ndarray], count: int, oracle: Oracle,
                rows: np.ndarray | None) -> tuple[Answers, float]:
        """The engine's logits for the ``count`` candidates ``candidates(part)`` builds (the run's images ``rows``;
        None: all) as the oracle's loss float64 (n,) and correct-pixel counts int64 (n,) (``small``) and class
        maps uint8 (n, H, W), and its seconds."""
        def ask(part: np.ndarray, part_rows: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray, float]:
            logits, seconds = self._query(engine, part)
            pred, correct = oracle.predictions(logits, part_rows)
            return (oracle.loss(logits, part_rows), correct), pred, seconds

        return sharded_query(ask, candidates, count, rows, (np.float64, np.int64), oracle.labels.shape[1:])

    def _own_problem(self, state: SquareState, images: np.ndarray, oracle: Oracle,
                     num_classes: int | None) -> str | None:
        """x_best within the float32 eps-ball around ``images`` (exactly as the attack computes it) and in [0, 1],
        finite best losses, then the shared bookkeeping (``query_loop.progress_problem``)."""
        radius = np.float32(self.config.radius)  # the attack's own float32 arithmetic gives the exact bounds
        low, high = np.clip(images - radius, 0, 1), np.clip(images + radius, 0, 1)
        outside = ~((low <= state.x_best) & (state.x_best <= high))
        if outside.any():
            return (f"has {int(outside.sum())} values of x_best outside the eps-ball of {self.config.eps:g}/255 "
                    "around the clean images or outside [0, 1]")
        if not np.isfinite(state.best_loss).all():
            return "has non-finite best losses"
        return progress_problem(state, self.config, oracle, num_classes)

    def _draw_squares(self, best: np.ndarray, images: np.ndarray, active: np.ndarray, side: int,
                      rng: np.random.Generator) -> Squares:
        """One square of ``side`` per image of ``active`` at a uniformly random position (the last row and column
        included) set to x ± ε/255 (one sign per channel, or one for all channels with colour grey), clipped to
        [0, 1], its colour redrawn until the square changes the best image (at most MAX_REDRAWS draws; a square
        still unchanged then takes the opposite colour, which differs in every channel). ``best`` and ``images``:
        all of the run's (N, C, H, W); outside its square a candidate is its best image, already in the ball."""
        n, c = active.size, images.shape[1]
        top = rng.integers(0, images.shape[2] - side + 1, size=n)
        left = rng.integers(0, images.shape[3] - side + 1, size=n)
        window = square_window(active, top, left, side, c)
        clean, current = images[window], best[window]
        values = np.empty_like(clean)
        redraw = np.arange(n)
        channels = 1 if self.config.colour == "grey" else c
        for _ in range(MAX_REDRAWS):
            signs = _signed(self.config.radius, rng, (redraw.size, channels, 1, 1))  # one colour per image
            # x ± ε lies on the ε-ball's boundary already: only [0, 1] can cut it.
            values[redraw] = np.clip(clean[redraw] + signs, 0, 1)
            unchanged = np.all(np.abs(values[redraw] - current[redraw]) < _UNCHANGED, axis=(1, 2, 3))
            redraw = redraw[unchanged]
            if not redraw.size:
                break
        else:
            values[redraw] = np.clip(clean[redraw] - signs[unchanged], 0, 1)
        return Squares(top, left, side, c, values)


@dataclass
class Squares:
    """One square per candidate: its top row and left column (n,), its side, the image's channels, and its
    values float32 (n, C, side, side)."""

    top: np.ndarray
    left: np.ndarray
    side: int
    channels: int
    values: np.ndarray

    def window(self, images: np.ndarray, which: slice | np.ndarray) -> tuple[np.ndarray, ...]:
        """:func:`square_window` of the squares ``which`` (a slice or mask of the candidates) in the images
        ``images`` (their indices in the array indexed, one per square)."""
        return square_window(images, self.top[which], self.left[which], self.side, self.channels)


def square_window(images: np.ndarray, top: np.ndarray, left: np.ndarray, side: int,
                  channels: int) -> tuple[np.ndarray, ...]:
    """Index arrays that cut a square of ``side`` at (``top``, ``left``) out of each image ``images`` (indices into
    the array indexed) in every channel: the windows are (m, channels, side, side)."""
    offsets = np.arange(side)
    return (np.asarray(images)[:, None, None, None], np.arange(channels)[None, :, None, None],
            (top[:, None] + offsets)[:, None, :, None], (left[:, None] + offsets)[:, None, None, :])
