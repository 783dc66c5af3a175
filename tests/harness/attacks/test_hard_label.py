"""The hard-label attack (issue 14): class maps in, nothing else. Against a real class-map ONNX target through ONNX
Runtime with its card, and against a predict-only Engine over a real small torch model whose ``infer`` raises;
its guarantees (budget, eps-ball, monotone, determinism, resume) and its state files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from engines.base import Engine, EngineInfo
from harness.attacks.hard_label import (
    CHANNELS,
    HardLabelAttack,
    HardLabelConfig,
    HardLabelState,
    block_grid,
    block_orders,
    level_sides,
    schedule_position,
)
from harness.attacks.square import SquareAttack, SquareConfig, init_signs
from harness.attacks.square_state import _checksum, load_state, save_state
from harness.data.base import IGNORE_INDEX
from harness.errors import HarnessError

SIDE = 32  # the engines' smallest input
EPS = 16.0


class TinyNet(nn.Module):
    """A real, seeded, untrained two-layer convolutional segmenter of 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class PredictOnlyEngine(Engine):
    """An Engine whose scores can never be read: ``infer`` raises, ``predict`` returns the argmax."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.eval()
        self.predicted = 0

    @property
    def info(self) -> EngineInfo:
        return EngineInfo("torch", "fp32", "cpu", torch.__version__, "")

    def _open(self) -> None: ...

    def _close(self) -> None: ...

    def _run(self, batch: np.ndarray) -> np.ndarray:
        raise AssertionError("the hard-label attack read scores")

    def infer(self, images: np.ndarray) -> np.ndarray:
        raise AssertionError("the hard-label attack read scores")

    def predict(self, images: np.ndarray) -> np.ndarray:
        assert type(images) is np.ndarray and images.dtype == np.float32
        self.predicted += len(images)
        with torch.inference_mode():
            return self.module(torch.from_numpy(images)).argmax(1).numpy()


@pytest.fixture(scope="module")
def torch_engine():
    with PredictOnlyEngine(TinyNet()) as engine:
        yield engine


def _images(n: int, seed: int = 0) -> np.ndarray:
    images = np.random.default_rng(seed).random((n, 3, SIDE, SIDE), dtype=np.float32)
    images[0, :, :4, :4] = 0.0  # saturated pixels: [0, 1] must hold where the eps-ball leaves it
    images[-1, :, -4:, -4:] = 1.0
    return images


@pytest.fixture(scope="module")
def batch(torch_engine) -> tuple[np.ndarray, np.ndarray]:
    """Images and, as labels, the engine's own clean class maps (clean accuracy 100 %) with an ignored band."""
    images = _images(3)
    labels = torch_engine.predict(images).astype(np.int64)
    labels[:, 0, :] = IGNORE_INDEX
    return images, labels


class Watch:
    """Each iteration's counts, queries and signs."""

    def __init__(self) -> None:
        self.correct: list[np.ndarray] = []
        self.queries: list[np.ndarray] = []

    def __call__(self, state: HardLabelState) -> None:
        self.correct.append(state.correct.copy())
        self.queries.append(state.queries.copy())


# ---------------------------------------------------------------- the schedule

@pytest.mark.parametrize("height, width", [(32, 32), (64, 64), (33, 47), (7, 100), (1, 1)])
def test_levels_halve_the_block_side_down_to_one_pixel_and_cover_the_image(height, width):
    sides = level_sides(height, width)
    assert sides[-1] == 1 and all(b <= a for a, b in zip(sides, sides[1:], strict=False))
    for side in sides:
        rows, cols = block_grid(side, height, width)
        assert rows * side >= height and cols * side >= width
        assert (rows - 1) * side < height and (cols - 1) * side < width  # no block entirely outside


def test_each_level_flips_every_one_of_its_blocks_once_per_cycle():
    counts = [CHANNELS * int(np.prod(block_grid(side, 64, 64))) for side in level_sides(64, 64)]
    positions = [schedule_position(t, 64, 64) for t in range(2 * sum(counts))]
    assert positions[0] == (0, 0, 0) and positions[counts[0]] == (0, 1, 0)
    assert positions[sum(counts)] == (1, 0, 0) and positions[-1] == (1, len(counts) - 1, counts[-1] - 1)
    for count in (1, 2, 12, 48, 97, 3072):
        multipliers, offsets = block_orders(5, 0, 2, 4, count)
        for a, b in zip(multipliers, offsets, strict=True):
            assert sorted((a * np.arange(count) + b) % count) == list(range(count))  # a permutation
    assert np.array_equal(block_orders(5, 0, 2, 4, 48)[0], block_orders(5, 0, 2, 4, 48)[0])


def test_the_attack_starts_from_the_square_attacks_initial_signs():
    for init in ("vertical", "horizontal", "checker"):
        a = init_signs((2, 3, 8, 8), init, np.random.default_rng(3))
        b = init_signs((2, 3, 8, 8), init, np.random.default_rng(3))
        assert a.dtype == np.int8 and np.array_equal(a, b) and set(np.unique(a)) <= {-1, 1}


# ---------------------------------------------------------------- an engine that never gives scores

def test_a_predict_only_engine_is_attacked_without_reading_one_score(torch_engine, batch):
    images, labels = batch
    before = torch_engine.predicted
    watch = Watch()
    config = HardLabelConfig(eps=EPS, queries=60, seed=1)
    state = HardLabelAttack(config).run(torch_engine, images, labels, on_iteration=watch)
    # The budget, the initial query included, and every query counted.
    assert np.all(state.queries <= 60) and np.all((state.queries == 60) | (state.correct == 0))
    assert torch_engine.predicted - before == int(state.queries.sum())
    for a, b in zip(watch.queries, watch.queries[1:], strict=False):
        assert np.all(b - a <= 1)
    # Monotone: no image's count of correct pixels ever rises; the attack makes progress.
    for a, b in zip(watch.correct, watch.correct[1:], strict=False):
        assert np.all(b <= a)
    assert state.pixel_accuracy < 1.0
    # The eps-ball and [0, 1]; the state's class maps are what the engine says of the best images.
    adversarial = state.adversarial(images)
    assert adversarial.dtype == np.float32 and adversarial.min() >= 0 and adversarial.max() <= 1
    assert np.abs(adversarial - images).max() <= EPS / 255 + 1e-6
    assert np.array_equal(torch_engine.predict(adversarial), state.best_pred)
    assert np.allclose(state.best_loss, 1 - state.correct / state.labelled)
    assert state.curve[0].queries == 1 and state.curve[-1].queries == 60


def test_a_class_map_onnx_target_through_onnx_runtime_and_its_card(convention_onnx):
    from engines.ort_engine import OrtEngine

    path, card = convention_onnx("argmax")
    assert not card.has_scores
    images = _images(2, seed=4)
    with OrtEngine(path, card=card) as engine:
        assert engine.has_scores is False
        labels = engine.predict(images).astype(np.int64)
        state = HardLabelAttack(HardLabelConfig(eps=EPS, queries=25)).run(engine, images, labels)
        assert np.all(state.queries <= 25) and engine.queries == len(images) + int(state.queries.sum())
        assert np.array_equal(engine.predict(state.adversarial(images)), state.best_pred)
        assert state.pixel_accuracy < 1.0
        with pytest.raises(HarnessError) as error:  # the Square Attack reads scores: refused in one line
            SquareAttack(SquareConfig(eps=EPS, queries=5)).run(engine, images, labels)
    message = str(error.value)
    assert "\n" not in message and "class maps only" in message
    assert all(word in message for word in ("hardlabel", "eval", "transfer"))


def test_same_seed_same_run_and_another_seed_another(torch_engine, batch):
    images, labels = batch
    runs = [HardLabelAttack(HardLabelConfig(eps=EPS, queries=30, seed=seed, init=init)).run(
        torch_engine, images, labels) for seed, init in ((2, "checker"), (2, "checker"), (3, "checker"))]
    assert np.array_equal(runs[0].signs, runs[1].signs) and runs[0].curve == runs[1].curve
    assert not np.array_equal(runs[0].signs, runs[2].signs)


def test_a_stopped_and_resumed_run_is_the_uninterrupted_run(torch_engine, batch, tmp_path):
    images, labels = batch
    config = HardLabelConfig(eps=EPS, queries=40, seed=7, init="horizontal")
    whole = HardLabelAttack(config).run(torch_engine, images, labels)
    done: list[int] = []
    stopped = HardLabelAttack(config).run(torch_engine, images, labels, on_iteration=lambda s: done.append(s.iteration),
                                          should_stop=lambda: done[-1] >= 17)
    assert stopped.iteration == 17 and not stopped.finished
    path = tmp_path / "state.npz"
    save_state(path, stopped, {"run": "test"})
    assert [p.name for p in tmp_path.iterdir()] == ["state.npz"]
    loaded = load_state(path, {"run": "test"}, config, images, labels, num_classes=4)
    assert isinstance(loaded, HardLabelState)
    resumed = HardLabelAttack(config).run(torch_engine, images, labels, state=loaded)
    assert np.array_equal(resumed.signs, whole.signs) and np.array_equal(resumed.queries, whole.queries)
    assert resumed.curve == whole.curve and np.array_equal(resumed.correct, whole.correct)
    with pytest.raises(HarnessError, match="another run"):
        load_state(path, {"run": "other"}, config, images, labels)
    with pytest.raises(HarnessError, match="other images, labels or parameters"):
        HardLabelAttack(HardLabelConfig(eps=EPS, queries=41, seed=7, init="horizontal")).run(
            torch_engine, images, labels, state=loaded)
    # A Square Attack's state file is not a hard-label one, and the other way round.
    with pytest.raises(HarnessError, match="cannot read the Square Attack state"):
        load_state(path, {"run": "test"}, SquareConfig(eps=EPS, queries=40), images, labels)


def _forge(path, edit) -> None:
    """Rewrite the state file with ``edit(header, arrays)`` applied and a valid checksum."""
    with np.load(path) as z:
        header = json.loads(str(z["header"]))
        arrays = {k: z[k] for k in z.files if k != "header"}
    edit(header, arrays)
    names = ("signs", "best_loss", "best_pred", "correct", "labelled", "queries")
    header["checksum"] = _checksum({k: v for k, v in header.items() if k != "checksum"}, arrays, names)
    with open(path, "wb") as f:
        np.savez(f, header=np.array(json.dumps(header)), **arrays)


def _zero_a_sign(header, arrays):
    arrays["signs"] = arrays["signs"].copy()
    arrays["signs"][0, 0, 0, 0] = 0


def _more_correct(header, arrays):
    arrays["correct"] = arrays["correct"] + 1


def _over_budget(header, arrays):
    arrays["queries"] = arrays["queries"] + 100


def _wider_signs(header, arrays):
    arrays["signs"] = arrays["signs"].astype(np.int16) * 2


@pytest.mark.parametrize("edit, message", [
    (_zero_a_sign, "signs other than -1 and +1"),
    (_more_correct, "correct-pixel counts"),
    (_over_budget, "budget"),
    (_wider_signs, "signs"),
])
def test_a_forged_state_with_a_valid_checksum_is_refused_in_one_line(torch_engine, batch, tmp_path, edit, message):
    images, labels = batch
    config = HardLabelConfig(eps=EPS, queries=10)
    path = tmp_path / "state.npz"
    save_state(path, HardLabelAttack(config).run(torch_engine, images, labels), {"run": "test"})
    _forge(path, edit)
    with pytest.raises(HarnessError) as error:
        load_state(path, {"run": "test"}, config, images, labels)
    assert "\n" not in str(error.value) and message in str(error.value), str(error.value)
    assert "hard-label attack state" in str(error.value)


def test_a_damaged_state_is_refused_in_one_line(torch_engine, batch, tmp_path):
    images, labels = batch
    config = HardLabelConfig(eps=EPS, queries=5)
    path = tmp_path / "state.npz"
    save_state(path, HardLabelAttack(config).run(torch_engine, images, labels), {"run": "test"})
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(HarnessError, match="cannot read the hard-label attack state") as error:
        load_state(path, {"run": "test"}, config, images, labels)
    assert "\n" not in str(error.value)


class BadPredictions:
    def __init__(self, answer) -> None:
        self.answer = answer

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.answer(images)


@pytest.mark.parametrize("answer", [
    lambda x: np.zeros((len(x), SIDE), dtype=np.int64),  # a wrong shape
    lambda x: np.zeros((len(x), SIDE, SIDE), dtype=np.float32),  # scores' dtype, not classes
    lambda x: np.full((len(x), SIDE, SIDE), 300, dtype=np.int64),  # no class
    lambda x: np.full((len(x), SIDE, SIDE), -1, dtype=np.int64),
])
def test_an_engine_that_returns_no_class_maps_is_a_one_line_error(batch, answer):
    images, labels = batch
    with pytest.raises(HarnessError, match="predict returned") as error:
        HardLabelAttack(HardLabelConfig(eps=EPS, queries=3)).run(BadPredictions(answer), images, labels)
    assert "\n" not in str(error.value)


def test_bad_parameters_and_inputs_are_one_line_errors(torch_engine, batch):
    images, labels = batch
    for config, message in ((HardLabelConfig(eps=0, queries=5), "eps"),
                            (HardLabelConfig(eps=1e-5, queries=5), "minimum"),
                            (HardLabelConfig(eps=8, queries=0), "budget"),
                            (HardLabelConfig(eps=8, queries=5, init="diagonal"), "init")):
        with pytest.raises(HarnessError, match=message):
            HardLabelAttack(config)
    attack = HardLabelAttack(HardLabelConfig(eps=8, queries=5))
    with pytest.raises(HarnessError, match="predict"):
        attack.run(object(), images, labels)
    with pytest.raises(HarnessError, match="labels"):
        attack.run(torch_engine, images, labels[:, :5])
    with pytest.raises(HarnessError, match="float32"):
        attack.run(torch_engine, images.astype(np.float64), labels)
    empty = labels.copy()
    empty[1] = IGNORE_INDEX
    with pytest.raises(HarnessError, match="image 1 has no labelled pixels"):
        attack.run(torch_engine, images, empty)


class ModulePredictor:
    """The real TinyNet's argmax at any image size (no Engine: the engines need 32x32 or more)."""

    def __init__(self) -> None:
        self.module = TinyNet().eval()

    def predict(self, images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.module(torch.from_numpy(images)).argmax(1).numpy()


# Images one pixel high or wide: a start whose draws already have the images' shape (stripes along the short
# side) must still give the attack signs it can write its best blocks into.
@pytest.mark.parametrize("height, width", [(1, 9), (9, 1), (1, 1), (2, 1)])
@pytest.mark.parametrize("init", ["vertical", "horizontal", "checker", "auto"])
def test_images_one_pixel_high_or_wide_keep_every_guarantee(height, width, init):
    engine = ModulePredictor()
    images = np.random.default_rng(height * 10 + width).random((3, 3, height, width), dtype=np.float32)
    labels = engine.predict(images).astype(np.int64)
    watch = Watch()
    state = HardLabelAttack(HardLabelConfig(eps=EPS, queries=12, init=init)).run(engine, images, labels,
                                                                                 on_iteration=watch)
    assert np.all(state.queries <= 12) and np.all(np.abs(state.signs) == 1)
    assert np.all(np.diff(np.stack(watch.correct), axis=0) <= 0)
    adversarial = state.adversarial(images)
    assert np.abs(adversarial - images).max() <= EPS / 255 + 1e-6
    assert np.array_equal(engine.predict(adversarial), state.best_pred)


@pytest.mark.parametrize("shape", [(2, 3, 0, 5), (2, 3, 5, 0), (1, 3, 0, 0)])
def test_images_without_pixels_are_a_one_line_error(shape):
    with pytest.raises(HarnessError, match="too small for blocks") as error:
        HardLabelAttack(HardLabelConfig(eps=EPS, queries=3)).run(ModulePredictor(), np.zeros(shape, np.float32),
                                                                   np.zeros((shape[0], *shape[2:]), np.int64))
    assert "\n" not in str(error.value)


def test_the_auto_start_tries_the_checkerboard_first_and_resumes_from_any_point(torch_engine, batch, tmp_path):
    images, labels = batch
    config = HardLabelConfig(eps=EPS, queries=12, seed=2, init="auto")
    first = HardLabelAttack(HardLabelConfig(eps=EPS, queries=2, seed=2, init="auto")).run(torch_engine, images, labels)
    rng = np.random.default_rng(2)
    stripes = init_signs(images.shape, "vertical", rng)
    checker = init_signs(images.shape, "checker", rng)
    right = [(torch_engine.predict(np.clip(images + np.float32(EPS / 255) * s, 0, 1)) == labels).sum(axis=(1, 2))
             for s in (stripes, checker)]
    assert np.array_equal(first.signs, np.where((right[1] < right[0])[:, None, None, None], checker, stripes))
    whole = HardLabelAttack(config).run(torch_engine, images, labels)
    done: list[int] = []
    stopped = HardLabelAttack(config).run(torch_engine, images, labels, on_iteration=lambda s: done.append(s.iteration),
                                          should_stop=lambda: done[-1] >= 1)
    save_state(tmp_path / "auto.npz", stopped, {"run": "auto"})
    resumed = HardLabelAttack(config).run(torch_engine, images, labels,
                                          state=load_state(tmp_path / "auto.npz", {"run": "auto"}, config, images,
                                                           labels))
    assert np.array_equal(resumed.signs, whole.signs) and resumed.curve == whole.curve


def test_grey_blocks_flip_every_channel_together(torch_engine, batch):
    images, labels = batch
    config = HardLabelConfig(eps=EPS, queries=40, init="checker", colour="grey")
    assert config.block_channels == 1
    state = HardLabelAttack(config).run(torch_engine, images, labels)
    assert np.all(state.signs[:, 0] == state.signs[:, 1]) and np.all(state.signs[:, 1] == state.signs[:, 2])
    assert np.all(state.queries <= 40) and state.pixel_accuracy < 1.0
    assert schedule_position(4, 64, 64, channels=1) == (0, 1, 0)  # level 0 has 2 x 2 grey blocks
    with pytest.raises(HarnessError, match="unknown block colour"):
        HardLabelConfig(eps=8, queries=5, colour="blue").validate()
