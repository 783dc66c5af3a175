"""Square Attack (issue 5): against a real ONNX Runtime engine of a trained reduced model, against a
plain numpy function, and through ``python -m harness blackbox``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.attacks.loss import pixel_cross_entropy
from harness.attacks.oracle import Oracle, argmax_classes
from harness.attacks.square import (
    SquareAttack,
    SquareConfig,
    SquareState,
    p_fraction,
    square_side,
    stripe_init,
)
from harness.attacks.square_state import load_state, save_state
from harness.cli import main
from harness.data.base import IGNORE_INDEX
from harness.errors import HarnessError

N_IMAGES = 4
BUDGET = 200  # queries per image in the main acceptance run
STRONG = {"eps": 8.0, "p_init": 0.3}  # the paper's eps; a large first square suits a budget of a few hundred


def _arrays(data) -> tuple[np.ndarray, np.ndarray]:
    images = np.ascontiguousarray(data.images.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255))
    return images, data.labels.astype(np.int64)


@pytest.fixture(scope="module")
def batch(synthetic_val) -> tuple[np.ndarray, np.ndarray]:
    return _arrays(synthetic_val.subset(N_IMAGES))


# ---------------------------------------------------------------- the schedule and the building blocks

def test_p_schedule_halves_at_the_reference_marks_of_10000():
    assert p_fraction(0.4, 0, 10000) == 0.4
    assert p_fraction(0.4, 10, 10000) == 0.4
    assert p_fraction(0.4, 11, 10000) == 0.2
    assert p_fraction(0.4, 50, 10000) == 0.2
    assert p_fraction(0.4, 51, 10000) == 0.1
    assert p_fraction(0.4, 8000, 10000) == 0.4 / 256
    assert p_fraction(0.4, 9999, 10000) == 0.4 / 512
    # Other budgets are mapped onto 10000 queries: at 1000, iteration 2 is "iteration 20" of 10000.
    assert p_fraction(0.4, 1, 1000) == 0.4 and p_fraction(0.4, 2, 1000) == 0.2
    assert p_fraction(0.4, 801, 1000) == 0.4 / 512


def test_square_side_covers_a_fraction_p_and_stays_inside_the_image():
    assert square_side(0.05, 64, 64) == 14  # round(sqrt(0.05 * 4096)) = round(14.3)
    assert square_side(1.0, 64, 64) == 63
    assert square_side(1e-9, 64, 64) == 1
    assert square_side(0.05, 32, 128) == 14 and square_side(0.5, 32, 128) == 31


@pytest.mark.parametrize("init", ["vertical", "horizontal"])
def test_stripe_init_is_one_signed_eps_colour_per_stripe_and_channel(batch, init):
    images, _ = batch
    radius = 8 / 255
    x = stripe_init(images, radius, init, np.random.default_rng(0))
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    delta = x - images
    assert np.abs(delta).max() <= radius + 1e-6
    inside = (images > radius) & (images < 1 - radius)  # pixels the clip leaves alone
    assert np.allclose(np.abs(delta[inside]), radius, atol=1e-6)
    signs = np.where(inside, np.sign(delta), np.nan)
    along = 2 if init == "vertical" else 3  # a vertical stripe is one column: constant along H
    across = 3 if init == "vertical" else 2
    with np.errstate(all="ignore"):
        assert np.array_equal(np.nanmax(signs, axis=along), np.nanmin(signs, axis=along), equal_nan=True)
        assert not np.array_equal(np.nanmax(signs, axis=across), np.nanmin(signs, axis=across), equal_nan=True)


def test_margin_oracle_is_the_mean_negated_correct_class_margin_over_labelled_pixels():
    logits = np.zeros((1, 3, 1, 3), dtype=np.float32)
    logits[0, :, 0, 0] = [3, 1, 0]   # label 0: margin 3 - 1 = 2
    logits[0, :, 0, 1] = [0, 5, 4]   # label 2: margin 4 - 5 = -1
    logits[0, :, 0, 2] = [9, 0, 0]   # ignored
    labels = np.array([[[0, 2, IGNORE_INDEX]]], dtype=np.int64)
    oracle = Oracle("margin", labels)
    assert oracle.loss(logits) == pytest.approx([(-2 + 1) / 2])
    pred, correct = oracle.predictions(logits)
    assert pred.tolist() == [[[0, 1, 0]]] and correct.tolist() == [1]


# 400: logits beyond float32's exp; -100: every exponential below float32's normal range.
@pytest.mark.parametrize(("scale", "offset"), [(3.0, 0.0), (400.0, 0.0), (1.0, -100.0)])
def test_ce_oracle_is_the_white_box_cross_entropy_for_any_subset_of_images(scale, offset):
    rng = np.random.default_rng(5)
    logits = (scale * rng.normal(size=(4, 6, 7, 9)) + offset).astype(np.float32)
    labels = rng.integers(0, 6, size=(4, 7, 9))
    labels[rng.random(labels.shape) < 0.3] = IGNORE_INDEX
    logits[0, 2][labels[0] == IGNORE_INDEX] = np.inf  # an ignored pixel's logits never count
    expected = pixel_cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).double().numpy()
    oracle = Oracle("ce", labels)
    assert np.allclose(oracle.loss(logits), expected, rtol=1e-5, atol=1e-6)
    rows = np.array([1, 3])
    assert np.allclose(oracle.loss(logits[rows], rows), expected[rows], rtol=1e-5, atol=1e-6)
    margin = Oracle("margin", labels)
    assert np.allclose(margin.loss(logits[rows], rows), margin.loss(logits)[rows])
    _, correct = oracle.predictions(logits[rows], rows)
    assert np.array_equal(correct, ((logits[rows].argmax(axis=1) == labels[rows]).sum(axis=(1, 2))))


def test_oracle_refuses_logits_and_labels_that_do_not_fit():
    labels = np.zeros((3, 4, 5), dtype=np.int64)
    logits = np.zeros((3, 2, 4, 5), dtype=np.float32)
    oracle = Oracle("ce", labels)
    for bad in (logits[:2], logits[:, :, :3]):  # rows=None means all 3 images, at the labels' size
        with pytest.raises(ValueError, match="do not fit"):
            oracle.loss(bad)
        with pytest.raises(ValueError, match="do not fit"):
            oracle.predictions(bad)
    assert np.allclose(oracle.loss(logits), np.log(2))  # a refused call leaves nothing behind
    with pytest.raises(HarnessError, match="2 classes"):
        Oracle("ce", np.where(labels == 0, 2, labels)).loss(logits)
    with pytest.raises(HarnessError, match="class indices"):
        Oracle("ce", labels - 1)


def test_predictions_are_numpy_argmax_with_the_first_maximum_on_ties():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3, 5, 9, 11)).astype(np.float32)
    logits[:, 3] = np.where(rng.random((3, 9, 11)) < 0.5, logits[:, 1], logits[:, 3])  # ties between 1 and 3
    logits[0, :, 0, 0] = 2.0  # all classes tie
    labels = rng.integers(0, 5, size=(3, 9, 11))
    pred, correct = Oracle("ce", labels).predictions(logits)
    assert pred.dtype == np.uint8 and np.array_equal(pred, logits.argmax(axis=1))
    assert correct.tolist() == (logits.argmax(axis=1) == labels).sum(axis=(1, 2)).tolist()
    logits[1, 2, 4, 4] = np.nan  # no maximum: the last class, never an index out of range
    assert argmax_classes(logits)[1, 4, 4] == 4


def test_bad_parameters_and_inputs_are_one_line_errors(batch):
    images, labels = batch
    for kwargs, match in (({"eps": 0}, "eps"), ({"eps": 300}, "eps"), ({"queries": 0}, "budget"),
                          ({"p_init": 1.5}, "p_init"), ({"init": "diagonal"}, "init"), ({"loss": "dice"}, "loss")):
        with pytest.raises(HarnessError, match=match):
            SquareAttack(SquareConfig(**{"eps": 8.0, "queries": 10, **kwargs}))
    attack = SquareAttack(SquareConfig(eps=8.0, queries=10))
    engine = types.SimpleNamespace(infer=lambda x: np.zeros((len(x), 7, *x.shape[2:]), np.float32))
    with pytest.raises(HarnessError, match="float32"):
        attack.run(engine, images.astype(np.float64), labels)
    with pytest.raises(HarnessError, match=r"\[0, 1\]"):
        attack.run(engine, images * 2, labels)
    with pytest.raises(HarnessError, match="labels"):
        attack.run(engine, images, labels[:, :5])
    empty = labels.copy()
    empty[1] = IGNORE_INDEX
    with pytest.raises(HarnessError, match="image 1 has no labelled pixels"):
        attack.run(engine, images, empty)


@pytest.mark.parametrize("engine", [object(), types.SimpleNamespace(infer=None),
                                    types.SimpleNamespace(predict=lambda x: np.zeros((len(x), *x.shape[2:])))])
def test_an_object_without_infer_is_a_one_line_error(batch, engine):
    images, labels = batch
    with pytest.raises(HarnessError, match="needs an engine with infer") as error:
        SquareAttack(SquareConfig(eps=8.0, queries=3)).run(engine, images, labels)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("shape", [(2, 3, 0, 5), (2, 3, 5, 0), (2, 3, 1, 5), (2, 3, 5, 1), (1, 3, 0, 0)])
def test_images_without_room_for_a_square_are_a_one_line_error(shape):
    engine = types.SimpleNamespace(infer=lambda x: np.zeros((len(x), 7, *x.shape[2:]), np.float32))
    with pytest.raises(HarnessError, match="too small for squares") as error:
        SquareAttack(SquareConfig(eps=8.0, queries=3)).run(engine, np.zeros(shape, np.float32),
                                                           np.zeros((shape[0], *shape[2:]), np.int64))
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------- a plain numpy function as the engine

@pytest.fixture(scope="module")
def numpy_classifier(synthetic_train):
    """A per-pixel quadratic colour classifier fitted by least squares: logits from pixels, numpy only (a weak
    model of the built-in scenes, whose classes own no colour, but a model that the attack can push)."""
    pixels = synthetic_train.images[:50].reshape(-1, 3).astype(np.float64) / 255
    labels = synthetic_train.labels[:50].reshape(-1)
    keep = labels != IGNORE_INDEX

    def features(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x, x ** 2, np.ones((len(x), 1))], axis=1)

    weights, *_ = np.linalg.lstsq(features(pixels[keep]), np.eye(7)[labels[keep]], rcond=None)

    def classify(images: np.ndarray) -> np.ndarray:
        assert type(images) is np.ndarray and images.dtype == np.float32  # all it is ever given
        n, _, h, w = images.shape
        logits = 10 * features(images.transpose(0, 2, 3, 1).reshape(-1, 3)) @ weights
        return logits.reshape(n, h, w, 7).transpose(0, 3, 1, 2).astype(np.float32)

    return classify


def test_the_attack_needs_nothing_but_a_function_from_pixels_to_logits(numpy_classifier, batch):
    images, labels = batch
    engine = types.SimpleNamespace(infer=numpy_classifier)  # the whole "engine"
    oracle = Oracle("ce", labels)
    clean_loss = oracle.loss(numpy_classifier(images))
    state = SquareAttack(SquareConfig(queries=100, seed=0, **STRONG)).run(engine, images, labels)
    print(f"numpy classifier: clean loss {clean_loss.mean():.4f}, after 100 queries {state.mean_loss:.4f}")
    assert np.all(state.queries <= 100)
    assert np.abs(state.x_best - images).max() <= STRONG["eps"] / 255 + 1e-6
    assert np.all(state.best_loss >= clean_loss) and state.mean_loss > clean_loss.mean()
    assert np.allclose(oracle.loss(numpy_classifier(state.x_best)), state.best_loss, atol=1e-5)


# ---------------------------------------------------------------- a real ONNX Runtime engine of a trained model

MODEL = "fcn-resnet50"  # the paper's Figure 4 model, reduced width


@pytest.fixture(scope="module")
def ort_engine(loaded_model, synthetic_val):
    """The ``ort`` engine of the trained reduced model, built by the shared factory (exports and caches ONNX)."""
    from engines.factory import create_engine

    model, source = loaded_model(MODEL)
    with create_engine("ort", model, source, synthetic_val) as engine:
        yield engine


class Recorder:
    """Passes every call on to ``engine`` and remembers each call's batch size."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.batches: list[int] = []

    def infer(self, images: np.ndarray) -> np.ndarray:
        self.batches.append(len(images))
        return self.engine.infer(images)


@pytest.fixture(scope="module")
def acceptance_run(ort_engine, batch):
    """One run of BUDGET queries per image, with what happened at every iteration."""
    images, labels = batch
    recorder = Recorder(ort_engine)
    history: list[tuple[int, np.ndarray, np.ndarray]] = []  # (engine calls, best loss, queries) after each step

    def watch(state: SquareState) -> None:
        history.append((len(recorder.batches), state.best_loss.copy(), state.queries.copy()))

    engine_queries = ort_engine.queries
    clean = Oracle("ce", labels).predictions(ort_engine.infer(images))[1].sum() / (labels != IGNORE_INDEX).sum()
    state = SquareAttack(SquareConfig(queries=BUDGET, seed=0, **STRONG)).run(recorder, images, labels,
                                                                            on_iteration=watch)
    spent_by_engine = ort_engine.queries - engine_queries - len(images)
    return state, recorder, history, float(clean), spent_by_engine


@pytest.mark.slow
def test_query_budget_is_never_exceeded_and_every_query_is_counted(acceptance_run, batch):
    state, recorder, history, _, spent_by_engine = acceptance_run
    assert np.all(state.queries <= BUDGET)
    assert np.all((state.queries == BUDGET) | (state.correct == 0))  # only a fully fooled image stops early
    assert sum(recorder.batches) == state.queries.sum() == spent_by_engine
    for (_, _, before), (_, _, after) in zip(history, history[1:], strict=False):
        assert np.all(after - before <= 1) and np.all(after <= BUDGET)


@pytest.mark.slow
def test_one_engine_call_per_iteration_with_one_candidate_per_attacked_image(acceptance_run, batch):
    state, recorder, history, _, _ = acceptance_run
    assert recorder.batches[0] == N_IMAGES  # the stripe initialisation
    for (calls_before, _, queries_before), (calls_after, _, queries_after) in zip(history, history[1:],
                                                                                  strict=False):
        assert calls_after == calls_before + 1
        attacked = int(((queries_before < BUDGET) & (queries_after > queries_before)).sum())
        assert recorder.batches[calls_after - 1] == attacked
    assert len(recorder.batches) == 1 + state.iteration


@pytest.mark.slow
def test_adversarial_images_stay_in_the_eps_ball_and_in_the_unit_interval(acceptance_run, batch):
    state, *_ = acceptance_run
    images, _ = batch
    assert state.x_best.dtype == np.float32
    assert np.abs(state.x_best - images).max() <= STRONG["eps"] / 255 + 1e-6
    assert state.x_best.min() >= 0 and state.x_best.max() <= 1


@pytest.mark.slow
def test_each_images_best_loss_never_decreases_and_is_what_the_engine_says(acceptance_run, batch, ort_engine):
    state, _, history, _, _ = acceptance_run
    images, labels = batch
    for (_, before, _), (_, after, _) in zip(history, history[1:], strict=False):
        assert np.all(after >= before)
    assert history[-1][1].min() > history[0][1].min() or np.any(history[-1][1] > history[0][1])
    logits = ort_engine.infer(state.x_best)
    oracle = Oracle("ce", labels)
    assert np.allclose(oracle.loss(logits), state.best_loss, rtol=1e-4, atol=1e-5)
    assert np.array_equal(oracle.predictions(logits)[0], state.best_pred)


@pytest.mark.slow
def test_a_few_hundred_queries_take_the_accuracy_clearly_below_clean(acceptance_run):
    state, _, _, clean, _ = acceptance_run
    print(f"{MODEL} on ort: clean {clean:.4f}, after {BUDGET} queries {state.pixel_accuracy:.4f}")
    assert state.pixel_accuracy < clean - 0.1
    curve = state.curve
    assert curve[0].queries == 1 and curve[-1].queries == BUDGET
    assert [p.queries for p in curve] == sorted({p.queries for p in curve})
    assert curve[-1].pixel_accuracy == pytest.approx(state.pixel_accuracy)


@pytest.mark.slow
def test_same_seed_same_result_and_another_seed_another(ort_engine, batch):
    images, labels = batch
    runs = [SquareAttack(SquareConfig(queries=25, seed=seed, **STRONG)).run(ort_engine, images, labels)
            for seed in (3, 3, 4)]
    assert np.array_equal(runs[0].x_best, runs[1].x_best)
    assert np.array_equal(runs[0].best_loss, runs[1].best_loss) and runs[0].curve == runs[1].curve
    assert not np.array_equal(runs[0].x_best, runs[2].x_best)


@pytest.mark.slow
@pytest.mark.parametrize("init, loss", [("horizontal", "ce"), ("vertical", "margin")])
def test_horizontal_init_and_margin_oracle_keep_the_guarantees(ort_engine, batch, init, loss):
    images, labels = batch
    losses = []
    state = SquareAttack(SquareConfig(queries=20, init=init, loss=loss, **STRONG)).run(
        ort_engine, images, labels, on_iteration=lambda s: losses.append(s.best_loss.copy()))
    assert np.all(state.queries <= 20)
    assert np.abs(state.x_best - images).max() <= STRONG["eps"] / 255 + 1e-6
    assert all(np.all(b >= a) for a, b in zip(losses, losses[1:], strict=False))
    assert np.allclose(Oracle(loss, labels).loss(ort_engine.infer(state.x_best)), state.best_loss,
                       rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_stopped_and_resumed_run_is_the_uninterrupted_run(ort_engine, batch, tmp_path):
    images, labels = batch
    config = SquareConfig(queries=30, seed=7, **STRONG)
    whole = SquareAttack(config).run(ort_engine, images, labels)
    done: list[int] = []  # iterations completed, as the attack reports them
    stopped = SquareAttack(config).run(ort_engine, images, labels, on_iteration=lambda s: done.append(s.iteration),
                                       should_stop=lambda: done[-1] >= 12)
    assert stopped.iteration == 12 and not stopped.finished
    path = tmp_path / "state.npz"
    save_state(path, stopped, {"run": "test"})
    assert [p.name for p in tmp_path.iterdir()] == ["state.npz"]  # no temporary file left behind
    resumed = SquareAttack(config).run(ort_engine, images, labels,
                                       state=load_state(path, {"run": "test"}, config, images, labels))
    assert resumed.finished
    assert np.array_equal(resumed.queries, whole.queries) and int(resumed.queries.sum()) == N_IMAGES * 30
    assert np.array_equal(resumed.x_best, whole.x_best) and resumed.curve == whole.curve
    with pytest.raises(HarnessError, match="another run"):
        load_state(path, {"run": "other"}, config, images, labels)
    with pytest.raises(HarnessError, match="other images, labels or parameters"):
        SquareAttack(SquareConfig(queries=31, seed=7, **STRONG)).run(
            ort_engine, images, labels, state=load_state(path, {"run": "test"}, config, images, labels))


# ---------------------------------------------------------------- python -m harness blackbox

def _blackbox(*extra: str) -> list[str]:
    return ["blackbox", "--model", MODEL, "--engine", "ort", "--n-images", "2", "--eps", "32", "--p-init", "0.3",
            *extra]


@pytest.mark.slow
def test_blackbox_command_writes_records_and_the_figure_4_curve(ort_engine, tmp_path, capsys):
    results, curve = tmp_path / "results.json", tmp_path / "curve.json"
    assert main(_blackbox("--queries", "12", "--init", "both", "--json", str(results), "--curve", str(curve))) == 0
    out = capsys.readouterr().out
    assert "in engine" in out and "queries/s" in out
    records = json.loads(results.read_text())["results"]
    assert [(r["attack"], r["params"].get("init")) for r in records] == [
        ("none", None), ("square", "vertical"), ("square", "horizontal")]
    for record in records[1:]:
        assert record["engine"] == "ort" and record["precision"] == "fp32" and record["n_images"] == 2
        assert record["queries"] == 24 and record["queries_per_image_max"] == 12
        assert record["params"] == {"eps": 32.0, "queries": 12, "p_init": 0.3, "init": record["params"]["init"],
                                    "loss": "ce", "seed": 0}
        assert 0 <= record["pixel_accuracy"] <= 1 and record["engine_seconds"] <= record["seconds"]
    document = json.loads(curve.read_text())
    assert [c["params"]["init"] for c in document["curves"]] == ["vertical", "horizontal"]
    assert document["curves"][0]["points"][-1]["queries"] == 12
    assert curve.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_an_interrupted_command_resumes_and_ends_with_the_same_budget(ort_engine, session_cache, tmp_path, capsys):
    states = Path(session_cache) / "square"
    def written() -> set[Path]:  # state files new or rewritten since the start (a kept test cache has old ones)
        return {p for p in states.glob("*.npz") if before.get(p) != p.stat().st_mtime_ns} if states.is_dir() else set()

    before = {p: p.stat().st_mtime_ns for p in states.glob("*.npz")} if states.is_dir() else {}
    # A budget the run cannot spend between its first save and the signal on a quiet fast machine (500 queries of 2
    # images took 0.3 s there: the signal then came after the run, outside its handler).
    budget = 3000
    args = _blackbox("--queries", str(budget), "--seed", "5")
    process = subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not written():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the run saved no state: {process.communicate()[1]}")
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("stopped after") and "state saved to" in last and "--resume" in last
    (state_file,) = written()
    stopped = np.load(state_file)["queries"]
    assert stopped.max() < budget
    results = tmp_path / "results.json"
    assert main([*args, "--resume", "--json", str(results)]) == 0
    square = json.loads(results.read_text())["results"][1]
    assert square["queries_per_image_max"] == budget and square["queries"] == 2 * budget
    assert int(np.load(state_file)["queries"].sum()) == 2 * budget


@pytest.mark.parametrize("extra, message", [
    (["--eps", "1e-6"], "eps 1e-06 is below the Square Attack's minimum 0.001"),
    (["--curve", "curve.png"], "give a .json file name"),
    (["--precision", "int8", "--engine", "torch"], "--engine torch runs fp32"),
    (["--resume", "--seed", "999"], "no saved Square Attack state of this run"),
])
def test_bad_options_are_one_line_errors_with_exit_2(ort_engine, capsys, extra, message):
    assert main(_blackbox("--queries", "5", *extra)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and message in err, err


@pytest.mark.parametrize("extra", [["--queries", "0"], ["--init", "diagonal"], ["--loss", "dice"], ["--eps", "0"],
                                   ["--eps", "300"], ["--p-init", "1.5"]])
def test_bad_choices_are_one_line_usage_errors(capsys, extra):
    assert main(_blackbox(*extra)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and extra[0] in err, err


@pytest.mark.slow
def test_a_corrupt_state_is_a_one_line_error(ort_engine, session_cache, capsys):
    assert main(_blackbox("--queries", "3", "--seed", "11")) == 0
    state_file = max((p for p in (Path(session_cache) / "square").glob("*.npz")
                      if p.stat().st_size > 1000 and json.loads(str(np.load(p)["header"]))["config"]["seed"] == 11),
                     key=lambda p: p.stat().st_mtime)  # the newest; a kept test cache holds earlier, truncated ones
    state_file.write_bytes(state_file.read_bytes()[:100])
    capsys.readouterr()
    assert main(_blackbox("--queries", "3", "--seed", "11", "--resume")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read the Square Attack state" in err, err
