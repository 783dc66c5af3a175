"""The budgeted query loop every black-box attack shares (the Square Attack, the hard-label attack).

A black-box attack keeps, per image, the best perturbation so far and what the engine answered to it. Its run:
one initial query of every image, then iterations, each sending one candidate for every image still under attack
(budget left, some labelled pixel still right) in one engine call and keeping the candidates that do better, so
that the best never gets worse. Curve points, generator state, timings and the checks a saved state must pass
before a run continues from it are the same for every such attack, and live here.

Template-method split (DESIGN.md): :meth:`BlackBoxAttack.run` validates, seeds, loops, times and records;
a subclass gives only its rule: the start (:meth:`BlackBoxAttack._start`), one iteration's candidates and what
it keeps of them (:meth:`BlackBoxAttack._improve`) and the checks of its own arrays
(:meth:`BlackBoxAttack._own_problem`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from harness import distributed
from harness.attacks.base import check_eps
from harness.attacks.oracle import Oracle
from harness.data.base import IGNORE_INDEX
from harness.errors import HarnessError

CHANNELS = 3
DEFAULT_CURVE_POINTS = 50
# The smallest eps (0-255 scale). A value's two vertices x - eps/255 and x + eps/255 must differ by far more than
# 2 * square._UNCHANGED after float32 rounding at every value in [0, 1] (float32's spacing below 1 is 6e-8), or no
# colour (sign) can change a value and the Square Attack's redraw could never succeed; 1e-3 (3.9e-6 in [0, 1]
# units) leaves a 15x margin.
MIN_EPS = 1e-3


class BudgetConfig:
    """What the config of every black-box attack shares, from its ``eps`` (0-255 scale), ``queries`` (per-image
    budget, the initial query included), ``init`` (its start, square.STARTS) and ``curve_every`` (queries between
    curve points; 0: about DEFAULT_CURVE_POINTS points) fields."""

    eps: float
    queries: int
    init: str
    curve_every: int

    def check_budget(self, attack: str) -> None:
        """A HarnessError naming ``attack`` when eps or the budget is out of range."""
        check_eps(self.eps)
        if self.eps < MIN_EPS:
            raise HarnessError(f"eps {self.eps:g} is below the {attack}'s minimum {MIN_EPS:g} (0-255 scale): "
                               "a step that small is lost in float32 rounding of [0, 1] pixels; give a larger --eps")
        if self.queries < 1:
            raise HarnessError(f"the query budget must be >= 1, got {self.queries}")

    @property
    def radius(self) -> float:
        """ε in [0, 1] pixel units, the scale of the images."""
        return self.eps / 255.0

    @property
    def curve_step(self) -> int:
        return self.curve_every or max(1, self.queries // DEFAULT_CURVE_POINTS)

    @property
    def first_update(self) -> int:
        """The first iteration of the attack's own update (a square, a block flip): 1 with ``init = auto``
        (iteration 0 tries the other start, square.AUTO_FIRST_CANDIDATE)."""
        return 1 if self.init == "auto" else 0


@dataclass
class CurvePoint:
    """The run after ``queries`` queries per image: pixel accuracy (fraction of all labelled
    pixels) of the best images and the mean of the per-image best losses."""

    queries: int
    pixel_accuracy: float
    mean_loss: float


@dataclass(kw_only=True)
class RunProgress:
    """The bookkeeping of a black-box run, shared by every attack's state (which adds its best perturbation).

    best_loss float64 (N,): the best score per image so far; best_pred uint8 (N, H, W): the engine's class map of
    the best image; correct int64 (N,): labelled pixels best_pred gets right; labelled int64 (N,);
    queries int64 (N,): engine queries spent per image (<= config.queries); iteration: iterations done (the
    initial query is not one); rng: the generator state; fingerprint: sha256 of the images, labels and config,
    checked on resume; curve: the CurvePoints so far; engine_seconds / seconds: wall time inside the engine / of
    the whole run, summed over resumes.
    """

    config: Any
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


ConfigT = TypeVar("ConfigT", bound=BudgetConfig)
StateT = TypeVar("StateT", bound=RunProgress)


def fingerprint(images: np.ndarray, labels: np.ndarray, config: Any) -> str:
    """sha256 of the images, the labels and ``config.as_dict()``: what a saved state must belong to."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    digest.update(repr(sorted(config.as_dict().items())).encode())
    return digest.hexdigest()


def timed(call: Callable[[np.ndarray], Any], batch: np.ndarray) -> tuple[Any, float]:
    """``call(batch)`` and the wall seconds it took: an engine query and its share of the run's time."""
    t0 = time.perf_counter()
    answer = call(batch)
    return answer, time.perf_counter() - t0


@dataclass
class Answers:
    """The engine's answers to one batch of candidates, as :func:`sharded_query` gathers them.

    ``small``: per-candidate arrays of a few numbers each (scores, correct-pixel counts), whole on every rank.
    :meth:`maps` gives the class maps uint8 (m, H, W) of the candidates a mask selects (those accepted): under
    torchrun only those travel between the ranks, not every candidate's map."""

    small: tuple[np.ndarray, ...]
    _maps: np.ndarray | None  # this rank's slice of the class maps (all of them alone)
    _part: range
    _map_shape: tuple[int, int]

    def maps(self, selected: np.ndarray) -> np.ndarray:
        """Class maps of the candidates where ``selected`` (bool, one per candidate) is True, in order."""
        if distributed.world().size == 1:
            assert self._maps is not None
            return self._maps[selected]
        counts = [int(selected[part.start:part.stop].sum()) for part in distributed.shards(len(selected))]
        mine = self._maps[selected[self._part.start:self._part.stop]] if self._maps is not None else None
        return distributed.gather_known_rows(mine, counts, self._map_shape, np.uint8)


Ask = Callable[[np.ndarray, np.ndarray], tuple[tuple[np.ndarray, ...], np.ndarray, float]]


def sharded_query(ask: Ask, candidates: Callable[[slice], np.ndarray], count: int, rows: np.ndarray | None,
                  small_dtypes: tuple[type, ...], map_shape: tuple[int, ...]) -> tuple[Answers, float]:
    """``ask(batch, rows) -> (small arrays, class maps, seconds in the engine)``: the engine's answers for the
    ``count`` candidates that ``candidates(part)`` builds (a slice of them), whose images are the run's images
    ``rows`` (None: all, in order); the small arrays are one value per candidate, of ``small_dtypes``; the class
    maps are ``map_shape`` (H, W).

    Alone, one call on all of them. Under torchrun every rank holds the whole run but builds and sends to the
    engine only its contiguous slice of the candidates (``distributed.shard``); the small answers are gathered in
    order (one fixed-size exchange: float64 holds every count exactly), so every rank continues with the answers
    one process would get (the engine must give an image the same answer whatever its batch: ONNX Runtime on a
    CPU does, measured bit for bit). The seconds are this rank's."""
    rows = np.arange(count) if rows is None else rows
    map_shape = (int(map_shape[0]), int(map_shape[1]))
    if distributed.world().size == 1:
        small, maps, seconds = ask(candidates(slice(0, count)), rows)
        return Answers(small, maps, range(count), map_shape), seconds
    part = distributed.shard(count)
    mine = slice(part.start, part.stop)
    small, maps, seconds = ask(candidates(mine), rows[mine]) if len(part) else (None, None, 0.0)
    table = distributed.gather_known_rows(
        np.stack([np.asarray(a, np.float64) for a in small], axis=1) if small is not None else None,
        [len(p) for p in distributed.shards(count)], (len(small_dtypes),), np.float64)
    gathered = tuple(table[:, i].astype(dtype) for i, dtype in enumerate(small_dtypes))
    return Answers(gathered, maps, part, map_shape), seconds


class BlackBoxAttack(ABC, Generic[ConfigT, StateT]):
    """``Attack(config).run(engine, images, labels)``: a black-box attack under a per-image query budget.

    ``images`` float32 (N, 3, H, W) in [0, 1]; ``labels`` int64 (N, H, W), 255 = ignore. Guarantees: per image
    at most ``config.queries`` images are sent to the engine, the initial query included; one engine call per
    iteration carries one candidate for each image still under attack; the best images stay within ε/255 (L∞) of
    ``images`` and in [0, 1]; each image's best never gets worse. The same seed, inputs and engine give the same
    run, and a run continued from a saved state (``state=``) is the run it would have been.

    A subclass sets ``title`` (the attack in messages), ``state_type``, ``perturbation`` (the name and dtype of
    its state's best-perturbation array), ``min_side`` and ``pieces`` (the smallest image side and what it is
    cut into), and implements the abstract methods.
    """

    title: ClassVar[str]
    state_type: ClassVar[type[RunProgress]]
    perturbation: ClassVar[tuple[str, type]]
    min_side: ClassVar[int] = 1
    pieces: ClassVar[str]

    def __init__(self, config: ConfigT) -> None:
        config.validate()
        self.config = config

    def run(self, engine: Any, images: np.ndarray, labels: np.ndarray, state: StateT | None = None,
            on_iteration: Callable[[StateT], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> StateT:
        """Attack until every image is fooled on all its pixels or has spent its budget.

        ``state``: a saved state of this same run to continue from; a HarnessError when it does not belong to
        it or breaks a guarantee of the class (:meth:`state_problem`). ``on_iteration(state)`` runs after the
        initial query and after every iteration (display, saving). ``should_stop()`` is asked between
        iterations: True ends the call early with a consistent state that can be saved and continued.
        """
        self._check_engine(engine)
        images, labels = self._validate(images, labels)
        oracle = Oracle(self._loss_name(), labels)
        expected = fingerprint(images, labels, self.config)
        distributed.same_on_every_rank(expected, "the images, labels and attack settings of this run")
        start = time.perf_counter()
        if state is None:
            rng = np.random.default_rng(self.config.seed)
            state = self._initial(engine, images, oracle, expected, rng)
            state.seconds += time.perf_counter() - start
            if on_iteration is not None:
                on_iteration(state)
        else:
            problem = self._problem(state, images, oracle, expected)
            if problem is not None:
                raise HarnessError(f"the saved {self.title} state {problem}")
            rng = np.random.default_rng()
            rng.bit_generator.state = state.rng
        # Each iteration spends one query of every image still attacked, all of which have spent 1 + iteration:
        # after queries - 1 iterations every image has spent its budget.
        for _ in range(self.config.queries - 1 - state.iteration):
            if state.finished or (should_stop is not None and _stop_everywhere(should_stop())):
                break
            t0 = time.perf_counter()
            self._step(engine, images, oracle, state, rng)
            state.rng = rng.bit_generator.state
            state.seconds += time.perf_counter() - t0
            if on_iteration is not None:
                on_iteration(state)
        return state

    def state_problem(self, state: StateT, images: np.ndarray, labels: np.ndarray,
                      num_classes: int | None = None) -> str | None:
        """Why ``state`` cannot continue this run on ``images`` and ``labels``, as a phrase ("has ..."), or None
        when it keeps every guarantee of the class (``run`` refuses such a state with a HarnessError).
        ``num_classes``: the engine's number of classes, when known (``run`` learns it only from a query)."""
        images, labels = self._validate(images, labels)
        return self._problem(state, images, Oracle(self._loss_name(), labels),
                             fingerprint(images, labels, self.config), num_classes)

    @abstractmethod
    def _check_engine(self, engine: Any) -> None:
        """A one-line HarnessError when ``engine`` cannot answer this attack's queries."""

    @abstractmethod
    def _loss_name(self) -> str:
        """The oracle (harness/attacks/oracle.py) of the run; its labels and counts serve every attack."""

    @abstractmethod
    def _start(self, engine: Any, images: np.ndarray, oracle: Oracle,
               rng: np.random.Generator) -> tuple[dict[str, np.ndarray], float]:
        """The initial query of all images: the state's perturbation, ``best_loss``, ``best_pred`` and
        ``correct`` arrays by name, and the engine seconds."""

    @abstractmethod
    def _improve(self, engine: Any, images: np.ndarray, oracle: Oracle, state: StateT, active: np.ndarray,
                 rng: np.random.Generator) -> float:
        """One iteration's rule: a candidate per image of ``active``, one engine call, the state's best arrays
        updated where a candidate does better; the engine seconds."""

    @abstractmethod
    def _own_problem(self, state: StateT, images: np.ndarray, oracle: Oracle,
                     num_classes: int | None) -> str | None:
        """The subclass's checks of a state whose identity and array shapes passed (its perturbation, its
        scores, and :func:`progress_problem` where it belongs in their order), or None."""

    def _validate(self, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(images, np.ndarray) or images.dtype != np.float32 or images.ndim != 4 \
                or images.shape[1] != CHANNELS or len(images) < 1:
            raise HarnessError("images must be a float32 numpy array (N, 3, H, W) with N >= 1")
        if images.size and (images.min() < 0 or images.max() > 1):
            raise HarnessError("images must lie in [0, 1]")
        if min(images.shape[2:]) < self.min_side:
            raise HarnessError(f"images of {images.shape[2]}x{images.shape[3]} pixels are too small for "
                               f"{self.pieces}")
        if not isinstance(labels, np.ndarray) or labels.shape != (images.shape[0], *images.shape[2:]):
            raise HarnessError(f"labels must be (N, H, W) = {(images.shape[0], *images.shape[2:])}")
        return np.ascontiguousarray(images), labels.astype(np.int64)

    def _initial(self, engine: Any, images: np.ndarray, oracle: Oracle, run_fingerprint: str,
                 rng: np.random.Generator) -> StateT:
        arrays, seconds = self._start(engine, images, oracle, rng)
        state = self.state_type(
            config=self.config, labelled=oracle.labelled.copy(), queries=np.ones(len(images), dtype=np.int64),
            iteration=0, rng=rng.bit_generator.state, fingerprint=run_fingerprint, engine_seconds=seconds, **arrays)
        state.curve.append(CurvePoint(1, state.pixel_accuracy, state.mean_loss))
        return state

    def _step(self, engine: Any, images: np.ndarray, oracle: Oracle, state: StateT,
              rng: np.random.Generator) -> None:
        """One iteration: the subclass's candidates and acceptance, then the queries and the curve."""
        active = state.active
        state.engine_seconds += self._improve(engine, images, oracle, state, active, rng)
        state.queries[active] += 1
        state.iteration += 1
        spent = 1 + state.iteration
        if spent % self.config.curve_step == 0 or state.finished:
            state.curve.append(CurvePoint(spent, state.pixel_accuracy, state.mean_loss))

    def _problem(self, state: StateT, images: np.ndarray, oracle: Oracle, run_fingerprint: str,
                 num_classes: int | None = None) -> str | None:
        """What breaks a guarantee if the run continued from ``state``, or None: the state of another run, arrays
        of other dtypes or shapes, then the subclass's checks. Not checked (it would cost a query per image):
        that best_loss and best_pred are the engine's answer to the best images."""
        if not isinstance(state, self.state_type) or state.config != self.config \
                or state.fingerprint != run_fingerprint:
            return "belongs to other images, labels or parameters"
        name, dtype = self.perturbation
        problem = arrays_problem(state, {name: (dtype, images.shape)}, images.shape)
        return problem if problem is not None else self._own_problem(state, images, oracle, num_classes)


def _stop_everywhere(requested: bool) -> bool:
    """Whether any rank was asked to stop: the ranks of a lockstep run stop after the same iteration."""
    return requested if distributed.world().size == 1 else not distributed.everywhere(not requested)


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
    """What breaks a guarantee in the bookkeeping every black-box run shares (a state whose arrays
    ``arrays_problem`` passed), or None: labelled and correct-pixel counts of the labels and class maps,
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


def _curve_problem(state: RunProgress, config: Any) -> str | None:
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
