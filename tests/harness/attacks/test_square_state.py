"""Square Attack (issue 12): every loop bounded (the smallest eps, the colour redraw), and state files that
are read without trust: a resumed state keeps every guarantee of the attack, or is refused in one line.

The engine is a fixed per-pixel linear map of the colours (numpy): a real function of the pixels, fast
enough that a run of 30 queries takes milliseconds. The state files are real files written by
``save_state`` (then truncated, flipped, rewritten or forged) and read by ``load_state``.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import itertools
import json
import pickle
import signal
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.attacks.query_loop import CurvePoint
from harness.attacks.square import (
    _UNCHANGED,
    MAX_REDRAWS,
    MIN_EPS,
    SquareAttack,
    SquareConfig,
    SquareState,
    _signed,
)
from harness.attacks.square_state import _checksum, load_state, run_context, save_state, state_path
from harness.data.base import IGNORE_INDEX
from harness.errors import HarnessError
from harness.suite.config import parse_suite
from harness.suite.square import _run as suite_run

CONFIG = SquareConfig(eps=8.0, queries=30, p_init=0.3, seed=1)
CONTEXT = {"run": "test"}
STOP_AT = 10  # iterations of the saved, unfinished run


class LinearEngine:
    """Logits (N, 4, H, W) of a fixed random linear map of each pixel's colour."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.weights = (20 * rng.normal(size=(4, 3))).astype(np.float32)
        self.bias = rng.normal(size=4).astype(np.float32)

    def infer(self, images: np.ndarray) -> np.ndarray:
        return np.einsum("kc,nchw->nkhw", self.weights, images) + self.bias[None, :, None, None]


ENGINE = LinearEngine()


def _batch() -> tuple[np.ndarray, np.ndarray]:
    """3 images of 10x12 with exact 0 and 1 values (where [0, 1] cuts the eps-ball), labels with ignored pixels."""
    rng = np.random.default_rng(2)
    images = rng.random((3, 3, 10, 12)).astype(np.float32)
    images[:, :, :2] = 0
    images[:, :, -2:] = 1
    labels = rng.integers(0, 4, size=(3, 10, 12))
    labels[rng.random(labels.shape) < 0.2] = IGNORE_INDEX
    return images, labels


IMAGES, LABELS = _batch()


def _stopped_state() -> SquareState:
    done: list[int] = []
    state = SquareAttack(CONFIG).run(ENGINE, IMAGES, LABELS, on_iteration=lambda s: done.append(s.iteration),
                                     should_stop=lambda: done[-1] >= STOP_AT)
    assert state.iteration == STOP_AT and not state.finished
    return state


STOPPED = _stopped_state()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Path]:
    """``files()``: a fresh path in a module-wide folder (hypothesis runs many examples in one test)."""
    folder = tmp_path_factory.mktemp("states")
    counter = itertools.count()
    return lambda: folder / f"state-{next(counter)}.npz"


@pytest.fixture(scope="module")
def valid_bytes(files: Callable[[], Path]) -> bytes:
    path = files()
    save_state(path, STOPPED, CONTEXT)
    return path.read_bytes()


def _load(path: Path, config: SquareConfig = CONFIG) -> SquareState:
    return load_state(path, CONTEXT, config, IMAGES, LABELS, num_classes=4)  # the engine's classes


def _refused(path: Path) -> str:
    """The one-line message with which ``path`` is refused; it names the file and says how to start afresh."""
    with pytest.raises(HarnessError) as caught:
        _load(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "--resume" in message, message
    assert len(message) < 1000, message
    return message


def assert_keeps_guarantees(state: SquareState) -> None:
    """The guarantees of SquareAttack, checked here on their own terms (not with the loader's code), then
    once more after the run continues from ``state`` to its end."""
    radius = CONFIG.eps / 255
    for current in (state, SquareAttack(CONFIG).run(ENGINE, IMAGES, LABELS, state=copy.deepcopy(state))):
        assert current.x_best.dtype == np.float32 and current.x_best.shape == IMAGES.shape
        assert np.abs(current.x_best.astype(np.float64) - IMAGES).max() <= radius + 1e-6
        assert current.x_best.min() >= 0 and current.x_best.max() <= 1
        assert current.queries.dtype == np.int64 and current.queries.shape == (len(IMAGES),)
        assert current.queries.min() >= 1 and current.queries.max() <= CONFIG.queries
        assert np.isfinite(current.best_loss).all()
        assert current.best_pred.dtype == np.uint8 and current.best_pred.max() < 4
        assert np.array_equal(current.correct, (current.best_pred == LABELS).sum(axis=(1, 2)))
        assert np.array_equal(current.labelled, (LABELS != IGNORE_INDEX).sum(axis=(1, 2)))
        assert 0 <= current.pixel_accuracy <= 1
        assert all(0 <= p.pixel_accuracy <= 1 and np.isfinite(p.mean_loss) for p in current.curve)
    assert current.finished and np.all(current.best_loss >= state.best_loss)


def _accepted_or_refused(path: Path) -> None:
    """The property of every test below: a state file is refused in one line, or it keeps every guarantee."""
    try:
        state = _load(path)
    except HarnessError:
        _refused(path)
        return
    assert_keeps_guarantees(state)


# ---------------------------------------------------------------- the smallest eps and the bounded redraw

@pytest.mark.parametrize("eps", [1e-6, 1e-5, 1e-4, MIN_EPS * 0.99])
def test_an_eps_below_the_minimum_is_refused(eps):
    with pytest.raises(HarnessError, match="below the Square Attack's minimum 0.001"):
        SquareAttack(SquareConfig(eps=eps, queries=10))
    SquareAttack(SquareConfig(eps=MIN_EPS, queries=10))


@pytest.mark.parametrize("eps", ["1e-6", "1e-5", "0.0009"])
def test_blackbox_refuses_a_tiny_eps_in_one_line_before_any_work(run_cli, eps):
    code, out, err = run_cli(["blackbox", "--model", "fcn-resnet50", "--eps", eps, "--queries", "5"])
    assert code == 2 and err.count("\n") == 1 and err.startswith("error:") and "minimum" in err, err
    assert out == ""


def _adversarial_pixels(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clean images made of the values where float32 rounds hardest (0, 1, one spacing from either, 0.5), and
    best images on the vertices of the smallest eps-ball around them, as the attack keeps them."""
    rng = np.random.default_rng(seed)
    values = np.array([0, 1, 1 - 2 ** -24, 2 ** -24, 0.5, 0.999], dtype=np.float32)
    images = values[rng.integers(0, len(values), size=(6, 3, 8, 8))]
    best = np.clip(images + _signed(MIN_EPS / 255, rng, images.shape), 0, 1)
    return images, best


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("side", [1, 3, 7])
def test_at_the_smallest_eps_every_candidate_square_changes_its_image(seed, side):
    images, best = _adversarial_pixels(seed)
    every = np.arange(len(images))
    squares = SquareAttack(SquareConfig(eps=MIN_EPS, queries=10))._draw_squares(best, images, every, side,
                                                                                np.random.default_rng(seed))
    candidates = best.copy()
    candidates[squares.window(every, slice(None))] = squares.values
    moved = np.abs(candidates - best).reshape(len(images), -1).max(axis=1)
    assert np.all(moved >= _UNCHANGED)
    assert np.all(np.abs(candidates.astype(np.float64) - images) <= MIN_EPS / 255 + 1e-7)


@pytest.mark.parametrize("eps", ["1e-6", "0.0009"])
def test_a_suite_refuses_a_square_eps_below_the_minimum_when_it_is_read(eps):
    with pytest.raises(HarnessError) as error:
        parse_suite(f'[models]\nnames = ["fcn-resnet50"]\n[square]\neps = {eps}\n', "tiny.toml")
    message = str(error.value)
    assert message.startswith("tiny.toml: [square] eps: expected at least 0.001") and "\n" not in message
    assert parse_suite('[models]\nnames = ["fcn-resnet50"]\n[square]\neps = 0.001\n', "ok.toml").square.eps == MIN_EPS


def _unvalidated(config: SquareConfig) -> SquareAttack:
    """An attack of a config that validation refuses: the loops must be bounded even there."""
    attack = object.__new__(SquareAttack)
    attack.config = config
    return attack


@pytest.fixture
def alarm():
    """A hang becomes a failure after 60 s instead of a stuck test run."""

    def fail(signum, frame):
        raise AssertionError("did not finish within 60 s: an unbounded loop")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_the_redraw_stops_after_max_redraws_and_takes_the_opposite_colour(alarm):
    """eps 1e-6 (the issue's hang): no colour can change the square; the redraw ends after MAX_REDRAWS draws and
    the square takes the opposite of the last colour, which is what the random stream says it is."""
    config = SquareConfig(eps=1e-6, queries=10)
    images = np.zeros((5, 3, 6, 6), dtype=np.float32)  # 0 + eps/255 moves a pixel by 4e-9 < _UNCHANGED
    candidates = images.copy()
    side, rng, twin = 3, np.random.default_rng(4), np.random.default_rng(4)
    every = np.arange(len(images))
    squares = _unvalidated(config)._draw_squares(candidates, images, every, side, rng)
    candidates[squares.window(every, slice(None))] = squares.values
    rows, cols = twin.integers(0, 4, size=5), twin.integers(0, 4, size=5)
    for _ in range(MAX_REDRAWS):
        signs = _signed(config.radius, twin, (5, 3, 1, 1))
    assert rng.bit_generator.state == twin.bit_generator.state  # exactly MAX_REDRAWS draws
    for i in range(5):
        window = candidates[i, :, rows[i]:rows[i] + side, cols[i]:cols[i] + side]
        assert np.array_equal(window, np.broadcast_to(np.clip(-signs[i], 0, 1), window.shape))


@pytest.mark.parametrize("eps", [1e-6, 1e-5])
def test_a_whole_run_at_an_eps_below_the_minimum_ends_within_its_budget(alarm, eps):
    state = _unvalidated(SquareConfig(eps=eps, queries=40, p_init=0.3)).run(ENGINE, IMAGES, LABELS)
    assert state.finished and state.queries.max() <= 40
    assert np.abs(state.x_best.astype(np.float64) - IMAGES).max() <= eps / 255 + 1e-7


# ---------------------------------------------------------------- valid states

def test_a_saved_state_loads_and_continues_as_the_uninterrupted_run(files):
    path = files()
    save_state(path, STOPPED, CONTEXT)
    assert sorted(p.name for p in path.parent.glob(f"*{path.name}*")) == [path.name]  # no temporary file left
    whole = SquareAttack(CONFIG).run(ENGINE, IMAGES, LABELS)
    resumed = SquareAttack(CONFIG).run(ENGINE, IMAGES, LABELS, state=_load(path))
    assert np.array_equal(resumed.x_best, whole.x_best) and np.array_equal(resumed.queries, whole.queries)
    assert np.array_equal(resumed.best_loss, whole.best_loss) and resumed.curve == whole.curve
    save_state(path, resumed, CONTEXT)
    assert_keeps_guarantees(_load(path))  # a finished state loads as well


# ---------------------------------------------------------------- malformed files

def _npz(members: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **members)
    return buffer.getvalue()


def _with_header(valid: bytes, edit: Callable[[dict], object]) -> bytes:
    """The valid file with its header replaced by ``edit(header)`` (a JSON value, or a str taken as the text)."""
    with np.load(io.BytesIO(valid)) as z:
        members = {name[:-4]: z[name[:-4]] for name in z.zip.namelist()}
    header = edit(json.loads(str(members["header"])))
    members["header"] = np.array(header if isinstance(header, str) else json.dumps(header))
    return _npz(members)


def _with_array(valid: bytes, name: str, array: np.ndarray) -> bytes:
    """The valid file with one array replaced and its header (checksum included) kept: a damaged file."""
    with np.load(io.BytesIO(valid)) as z:
        members = {n[:-4]: z[n[:-4]] for n in z.zip.namelist()}
    members[name] = array
    return _npz(members)


def _zip(names: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in names.items():
            archive.writestr(name, data)
    return buffer.getvalue()


MALFORMED: dict[str, Callable[[bytes], bytes]] = {
    "zero bytes": lambda v: b"",
    "text": lambda v: b"not a state file\n",
    "10 bytes": lambda v: v[:10],
    "half": lambda v: v[: len(v) // 2],
    "all but the last byte": lambda v: v[:-1],
    "an .npy array": lambda v: _npy(np.zeros(3)),
    "a pickle": lambda v: pickle.dumps({"x_best": [1, 2]}),
    "a zip of other members": lambda v: _zip({"a.txt": b"hello"}),
    "a zip with an extra member": lambda v: _npz_plus(v),
    "a deflated zip of garbage": lambda v: _zip_deflated_garbage(),
    "header an integer array": lambda v: _header_array(v),
    "header a list": lambda v: _with_header(v, lambda h: [1, 2]),
    "header a string": lambda v: _with_header(v, lambda h: "not json {"),
    "header nested 200000 deep": lambda v: _with_header(v, lambda h: "[" * 200000 + "]" * 200000),
    "header without fields": lambda v: _with_header(v, lambda h: {"version": 2}),
    "version 1": lambda v: _with_header(v, lambda h: {**h, "version": 1}),
    "version true": lambda v: _with_header(v, lambda h: {**h, "version": True}),
    "context a list": lambda v: _with_header(v, lambda h: {**h, "context": [1]}),
    "edited iteration": lambda v: _with_header(v, lambda h: {**h, "iteration": h["iteration"] + 1}),
    "edited queries": lambda v: _with_array(v, "queries", np.full(3, 10 ** 6, dtype=np.int64)),
    "x_best of another shape": lambda v: _with_array(v, "x_best", np.zeros((30, 3, 10, 12), np.float32)),
}


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npz_plus(valid: bytes) -> bytes:
    with np.load(io.BytesIO(valid)) as z:
        members = {n[:-4]: z[n[:-4]] for n in z.zip.namelist()}
    return _npz({**members, "extra": np.zeros(2)})


def _zip_deflated_garbage() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("header.npy", b"\x93NUMPY" + bytes(range(256)) * 4)
    return buffer.getvalue()


def _header_array(valid: bytes) -> bytes:
    with np.load(io.BytesIO(valid)) as z:
        members = {n[:-4]: z[n[:-4]] for n in z.zip.namelist()}
    return _npz({**members, "header": np.arange(4)})


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_state_file_is_refused_in_one_line(files, valid_bytes, name):
    path = files()
    path.write_bytes(MALFORMED[name](valid_bytes))
    message = _refused(path)
    if name.startswith("edited") or name.endswith("shape"):
        assert "checksum" in message or "more than" in message, message


# ---------------------------------------------------------------- forged states (saved with a valid checksum)

def _forge(**changes) -> Callable[[SquareState], SquareState]:
    return lambda s: dataclasses.replace(copy.deepcopy(s), **changes)


def _set(name: str, index: tuple, value) -> Callable[[SquareState], SquareState]:
    def forge(state: SquareState) -> SquareState:
        forged = copy.deepcopy(state)
        getattr(forged, name)[index] = value
        return forged

    return forge


def _other_vertex_beyond_the_ball(state: SquareState) -> SquareState:
    forged = copy.deepcopy(state)
    forged.x_best[0, 0, 5, 5] = np.clip(IMAGES[0, 0, 5, 5] + 2 * np.float32(CONFIG.radius), 0, 1)
    return forged


def _above_one(state: SquareState) -> SquareState:
    forged = copy.deepcopy(state)
    forged.x_best[0, 0, -1, 0] = np.float32(1 + 1e-6)  # the clean pixel is 1: the ball allows it, [0, 1] not
    return forged


def _consistent(state: SquareState, best_pred: np.ndarray) -> SquareState:
    """Class maps replaced and the pixel counts recomputed to fit them: only best_pred itself is wrong."""
    forged = copy.deepcopy(state)
    forged.best_pred = best_pred
    forged.correct = (best_pred == LABELS).sum(axis=(1, 2), dtype=np.int64)
    return forged


_MT = np.random.MT19937(0).state
MT19937 = {**_MT, "state": {"key": _MT["state"]["key"].tolist(), "pos": _MT["state"]["pos"]}}  # as JSON holds it
FORGED: dict[str, tuple[Callable[[SquareState], SquareState], str]] = {
    "x_best shape": (lambda s: _forge(x_best=s.x_best[:, :, :5].copy())(s), "has x_best float32 (3, 3, 5, 12)"),
    "x_best float64": (lambda s: _forge(x_best=s.x_best.astype(np.float64))(s), "x_best has 8768 bytes"),
    "fewer images": (lambda s: _forge(**{n: getattr(s, n)[:2].copy() for n in
                                         ("x_best", "best_loss", "best_pred", "correct", "labelled", "queries")})(s),
                     "expected float32 (3, 3, 10, 12)"),
    "queries int32": (lambda s: _forge(queries=s.queries.astype(np.int32))(s), "has queries int32"),
    "queries beyond the budget": (_set("queries", (0,), 31), "outside [1, 30] (the budget)"),
    "queries zero": (_set("queries", (1,), 0), "outside [1, 30]"),
    "queries behind the others": (_set("queries", (1,), 3), "cannot give"),
    "x_best beyond the eps-ball": (_other_vertex_beyond_the_ball, "outside the eps-ball of 8/255"),
    "x_best above 1": (_above_one, "outside [0, 1]"),
    "x_best NaN": (_set("x_best", (2, 1, 3, 3), np.nan), "outside the eps-ball"),
    "best_loss NaN": (_set("best_loss", (0,), np.nan), "non-finite best losses"),
    "best_loss inf": (_set("best_loss", (2,), np.inf), "non-finite best losses"),
    "best_pred 255": (lambda s: _consistent(s, np.full_like(s.best_pred, 255)), "has class 255"),
    "best_pred beyond the classes": (lambda s: _consistent(s, np.full_like(s.best_pred, 4)),
                                     "has class 4 in best_pred (classes are below 4)"),
    "correct forged": (_set("correct", (0,), 0), "correct-pixel counts"),
    "labelled forged": (_set("labelled", (0,), 1), "labelled pixels"),
    "iteration beyond": (_forge(iteration=STOP_AT + 1), "cannot give"),
    "iteration at the budget": (_forge(iteration=30), "expected an integer in [0, 29]"),
    "iteration a float": (_forge(iteration=10.0), "expected an integer"),
    "rng an MT19937 state": (_forge(rng=MT19937), "not a PCG64 state"),
    "rng a string": (_forge(rng="garbage"), "not a PCG64 state"),
    "rng a negative state": (lambda s: _forge(rng={**s.rng, "state": {"state": -1, "inc": 3}})(s), "PCG64"),
    "rng an even increment": (lambda s: _forge(rng={**s.rng, "state": {"state": 5, "inc": 4}})(s), "PCG64"),
    "rng booleans": (lambda s: _forge(rng={**s.rng, "has_uint32": True})(s), "PCG64"),
    "curve without points": (_forge(curve=[]), "curve"),
    "curve with an extra point": (lambda s: _forge(curve=[*s.curve, CurvePoint(11, 0.5, 9.0)])(s), "curve"),
    "curve accuracy 1.5": (lambda s: _forge(curve=[CurvePoint(1, 1.5, s.curve[0].mean_loss), *s.curve[1:]])(s),
                           "outside [0, 1]"),
    "curve NaN loss": (lambda s: _forge(curve=[CurvePoint(1, 0.5, float("nan")), *s.curve[1:]])(s), "non-finite"),
    "curve loss above the state's": (lambda s: _forge(curve=[*s.curve[:-1], dataclasses.replace(
        s.curve[-1], mean_loss=s.mean_loss + 1)])(s), "exceeds"),
    "engine seconds beyond seconds": (lambda s: _forge(engine_seconds=s.seconds + 1)(s), "timings"),
    "seconds NaN": (_forge(seconds=float("nan")), "timings"),
    "other config": (lambda s: _forge(config=dataclasses.replace(CONFIG, seed=2))(s), "other images, labels"),
    "other fingerprint": (_forge(fingerprint="0" * 64), "other images, labels"),
}


@pytest.mark.parametrize("name", list(FORGED))
def test_a_forged_state_with_a_valid_checksum_is_refused_in_one_line(files, name):
    forge, reason = FORGED[name]
    path = files()
    save_state(path, forge(STOPPED), CONTEXT)
    message = _refused(path)
    assert reason in message, message


def test_a_state_of_another_context_names_what_differs(files):
    path = files()
    save_state(path, STOPPED, {"run": "test", "model": "x" * 5000})
    message = _refused(path)
    assert "model" in message and "another run" in message


def test_the_suite_starts_afresh_over_a_forged_state(session_cache):
    context = run_context("linear", "reduced", "0" * 64, {"name": "numpy", "precision": "fp32"}, {"name": "random"},
                          len(IMAGES), CONFIG)
    path = state_path(context, prefix="suite-")
    save_state(path, FORGED["queries beyond the budget"][0](STOPPED), context)
    try:
        state, reused = suite_run(ENGINE, CONFIG, context, IMAGES, LABELS, "linear", None)
        assert not reused and state.queries.max() <= CONFIG.queries and state.finished
        assert_keeps_guarantees(load_state(path, context, CONFIG, IMAGES, LABELS))
    finally:
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------- properties (hypothesis)

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(data=st.binary(max_size=2048))
def test_random_bytes_are_refused_in_one_line(files, data):
    path = files()
    path.write_bytes(data)
    _refused(path)


@PROPERTY
@given(fraction=st.floats(0, 1, exclude_max=True))
def test_every_truncation_of_a_valid_file_is_refused_in_one_line(files, valid_bytes, fraction):
    path = files()
    path.write_bytes(valid_bytes[: int(fraction * len(valid_bytes))])
    _refused(path)


@PROPERTY
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4))
def test_flipped_bytes_are_refused_or_keep_every_guarantee(files, valid_bytes, flips):
    data = bytearray(valid_bytes)
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    path = files()
    path.write_bytes(bytes(data))
    _accepted_or_refused(path)


SPECIAL = [np.nan, np.inf, -np.inf, -1, 0, 1, 2, 10, 11, 29, 30, 31, 254, 255, 2 ** 40, -(2 ** 40),
           CONFIG.radius, -CONFIG.radius, 2 * CONFIG.radius, 1 + 1e-6, 0.5]
ARRAYS = ("x_best", "best_loss", "best_pred", "correct", "labelled", "queries")
DTYPES = (np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_)


@st.composite
def array_forgeries(draw) -> Callable[[SquareState], SquareState]:
    """One change to one array of the state: a value at an index, a vertex of the ball, a dtype or a shape."""
    name = draw(st.sampled_from(ARRAYS))
    kind = draw(st.sampled_from(["value", "value", "vertex", "dtype", "shape"]))
    seed = draw(st.integers(0, 2 ** 16))

    def forge(state: SquareState) -> SquareState:
        forged = copy.deepcopy(state)
        array = getattr(forged, name)
        rng = np.random.default_rng(seed)
        index = tuple(int(rng.integers(0, d)) for d in array.shape) if array.size else None
        with np.errstate(all="ignore"):
            if kind == "value" and index is not None:
                array[index] = np.array(draw_value).astype(array.dtype)
            elif kind == "vertex" and forged.x_best.shape == IMAGES.shape:  # a vertex of the ball: legitimate
                pixel = tuple(int(rng.integers(0, d)) for d in IMAGES.shape)
                sign = np.float32(1 if rng.random() < 0.5 else -1)
                forged.x_best[pixel] = np.clip(IMAGES[pixel] + sign * np.float32(CONFIG.radius), 0, 1)
            elif kind == "dtype":
                setattr(forged, name, array.astype(draw_dtype))
            else:
                setattr(forged, name, array[: max(0, len(array) - 1)] if rng.random() < 0.5 else array[None])
        return forged

    draw_value = draw(st.sampled_from(SPECIAL) | st.floats(allow_nan=True, allow_infinity=True, width=32))
    draw_dtype = draw(st.sampled_from(DTYPES))
    return forge


@PROPERTY
@given(forgeries=st.lists(array_forgeries(), min_size=1, max_size=3))
def test_forged_arrays_are_refused_or_keep_every_guarantee(files, forgeries):
    state = STOPPED
    for forge in forgeries:
        state = forge(state)
    path = files()
    save_state(path, state, CONTEXT)
    _accepted_or_refused(path)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                      max_size=3), max_leaves=8)
HEADER_FIELDS = ("version", "config", "iteration", "rng", "fingerprint", "curve", "engine_seconds", "seconds",
                 "context")


def _resigned(valid: bytes, edit: Callable[[dict], None]) -> bytes:
    """The valid file with its header edited and its checksum recomputed: a file another program wrote."""
    with np.load(io.BytesIO(valid)) as z:
        members = {n[:-4]: z[n[:-4]] for n in z.zip.namelist()}
    header = json.loads(str(members.pop("header")))
    edit(header)
    header.pop("checksum")
    header["checksum"] = _checksum(header, members)
    return _npz({"header": np.array(json.dumps(header)), **members})


@st.composite
def header_edits(draw) -> Callable[[dict], None]:
    """One header field, or one entry inside it (a config key, a generator field, a curve point's value),
    replaced by any JSON value."""
    field = draw(st.sampled_from(HEADER_FIELDS))
    value = draw(JSON_VALUES | st.integers(-3, 40) | st.sampled_from([0.5, 1.0, 1.5, float("nan"), 2 ** 128]))
    depth = draw(st.integers(0, 2))
    choice = draw(st.integers(0, 2 ** 16))

    def edit(header: dict) -> None:
        target, key = header, field
        for _ in range(depth):  # walk down into a dict or list, if the field holds one
            inner = target[key]
            keys = list(inner) if isinstance(inner, dict) else list(range(len(inner))) if isinstance(inner, list) \
                else []
            if not keys:
                break
            target, key = inner, keys[choice % len(keys)]
        target[key] = value

    return edit


@PROPERTY
@given(edits=st.lists(header_edits(), min_size=1, max_size=3))
def test_forged_header_fields_are_refused_or_keep_every_guarantee(files, valid_bytes, edits):
    def edit(header: dict) -> None:
        for one in edits:
            one(header)

    path = files()
    path.write_bytes(_resigned(valid_bytes, edit))
    _accepted_or_refused(path)


# ---------------------------------------------------------------- python -m harness blackbox --resume

def _blackbox(*extra: str) -> list[str]:
    return ["blackbox", "--model", "fcn-resnet50", "--engine", "ort", "--n-images", "2", "--queries", "4",
            "--p-init", "0.3", "--seed", "13", *extra]


def _states_of_seed(cache: Path, seed: int) -> list[Path]:
    """The readable state files in ``cache`` of runs with ``seed`` (a kept test cache also holds damaged ones)."""
    found = []
    for path in (cache / "square").glob("*.npz"):
        try:
            with np.load(path) as z:
                if json.loads(str(z["header"]))["config"]["seed"] == seed:
                    found.append(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            continue
    return found


def _with_arrays(valid: bytes, **arrays: np.ndarray) -> bytes:
    """The valid file with arrays replaced and its checksum recomputed: a forged file that reads cleanly."""
    with np.load(io.BytesIO(valid)) as z:
        members = {n[:-4]: z[n[:-4]] for n in z.zip.namelist()}
    header = json.loads(str(members.pop("header")))
    members.update(arrays)
    header.pop("checksum")
    header["checksum"] = _checksum(header, members)
    return _npz({"header": np.array(json.dumps(header)), **members})


@pytest.mark.slow
def test_blackbox_resume_refuses_a_forged_state_in_one_line_and_a_fresh_run_replaces_it(run_cli, session_cache,
                                                                                         trained_model):
    trained_model("fcn-resnet50")  # the command loads the cached checkpoint
    code, _, err = run_cli(_blackbox())
    assert code == 0, err
    state_file = max(_states_of_seed(Path(session_cache), 13), key=lambda p: p.stat().st_mtime)
    valid = state_file.read_bytes()
    with np.load(state_file) as z:
        queries, x_best = z["queries"], z["x_best"]
    forgeries = {"queries beyond the budget": _with_arrays(valid, queries=queries + 100),
                 "x_best outside the eps-ball": _with_arrays(valid, x_best=np.clip(x_best + 0.2, 0, 1)),
                 "truncated": valid[:200], "empty": b""}
    for name, data in forgeries.items():
        state_file.write_bytes(data)
        code, _, err = run_cli(_blackbox("--resume"))
        assert code == 2 and err.count("\n") == 1 and err.startswith("error:"), (name, err)
        assert str(state_file) in err and "--resume" in err, (name, err)
        assert state_file.read_bytes() == data, name  # refused, left as it was
    code, _, err = run_cli(_blackbox())  # without --resume: starts afresh and replaces the file
    assert code == 0 and "starting afresh" in err, err
    code, _, err = run_cli(_blackbox("--resume"))  # the finished state loads and is reported as it is
    assert code == 0, err
