"""The Square Attack beyond the paper (issue 14): masked oracles (``mce``, ``mmargin``), the ``scaled`` p schedule, the
checkerboard start, the refusal of a target without scores, and ``blackbox --attack hardlabel`` on a class-map
ONNX target with its card."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from harness.attacks.oracle import ORACLES, Oracle
from harness.attacks.square import (
    SCALED_MIN_SIDE,
    SquareAttack,
    SquareConfig,
    has_scores,
    init_signs,
    scaled_side,
    stripe_init,
)
from harness.cli import main
from harness.data.base import IGNORE_INDEX
from harness.errors import HarnessError

# ---------------------------------------------------------------- masked oracles against hand-computed values

# One image of 1 x 4 pixels, 3 classes: correct and confident, fooled, a tie the first maximum wins (correct),
# and an ignored pixel whose logits must not matter.
LOGITS = np.array([[[[2.0, 0.0, 1.0, 50.0]], [[0.0, 1.0, 1.0, -50.0]], [[0.0, 0.0, 0.0, 0.0]]]], dtype=np.float32)
LABELS = np.array([[[0, 0, 1, IGNORE_INDEX]]])


def _ce(z: list[float], y: int) -> float:
    return math.log(sum(math.exp(v) for v in z)) - z[y]


def test_mce_is_the_cross_entropy_of_the_correct_pixels_and_log_k_for_the_fooled():
    # pixel 0: z = (2, 0, 0), label 0, correct: CE log(e^2 + 2) - 2; pixel 1: z = (0, 1, 0), label 0, argmax 1:
    # fooled, log 3; pixel 2: z = (1, 1, 0), label 1, the first maximum is class 0: fooled, log 3.
    pixel0 = _ce([2, 0, 0], 0)
    expected = (pixel0 + math.log(3) + math.log(3)) / 3
    assert Oracle("mce", LABELS).loss(LOGITS)[0] == pytest.approx(expected, rel=1e-6)
    assert Oracle("ce", LABELS).loss(LOGITS)[0] == pytest.approx(
        (pixel0 + _ce([0, 1, 0], 0) + _ce([1, 1, 0], 1)) / 3, rel=1e-6)


def test_mmargin_is_the_margin_of_the_correct_pixels_and_zero_for_the_fooled():
    # pixel 0: margin max(0, 0) - 2 = -2; pixels 1 and 2 fooled: 0.
    assert Oracle("mmargin", LABELS).loss(LOGITS)[0] == pytest.approx(-2 / 3, rel=1e-6)
    # The tie: the same logits with label 0 are correct (numpy's first maximum) at margin 0.
    tie = LABELS.copy()
    tie[0, 0, 2] = 0
    assert Oracle("mmargin", tie).loss(LOGITS)[0] == pytest.approx(-2 / 3, rel=1e-6)
    assert Oracle("mce", tie).loss(LOGITS)[0] == pytest.approx(
        (_ce([2, 0, 0], 0) + math.log(3) + _ce([1, 1, 0], 0)) / 3, rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 6), st.sampled_from(["mce", "mmargin"]))
def test_fooling_a_pixel_never_lowers_a_masked_score_and_the_score_is_bounded(seed, k, name):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(2, k, 3, 5)) * 4).astype(np.float32)
    labels = rng.integers(0, k, size=(2, 3, 5))
    labels[0, 0, 0] = IGNORE_INDEX
    oracle = Oracle(name, labels)
    cap = math.log(k) if name == "mce" else 0.0
    score = oracle.loss(logits)
    assert np.all(score <= cap + 1e-6)
    pred, correct = oracle.predictions(logits)
    right = np.argwhere((pred == labels) & (labels != IGNORE_INDEX))
    if len(right):
        i, y, x = right[0]
        fooled = logits.copy()
        fooled[i, (labels[i, y, x] + 1) % k, y, x] = logits[i, :, y, x].max() + 1  # another class wins
        after = oracle.loss(fooled)
        assert after[i] >= score[i] - 1e-6 and after[1 - i] == score[1 - i]
        assert oracle.predictions(fooled)[1][i] == correct[i] - 1
    everything_fooled = np.zeros_like(logits)
    everything_fooled[:, 0] = 1
    everything_fooled[:, 1][labels == 0] = 2
    assert np.allclose(oracle.loss(everything_fooled), cap)


# ---------------------------------------------------------------- the scaled schedule and the checkerboard start

def test_scaled_schedule_gives_each_side_one_cover_of_the_image_and_stops_at_the_minimum_side():
    # 64 x 64, p_init 0.05: sides 14 (5 x 5 = 25 squares tile it), 10 (49), 7 (100), 5 (169), 4 (256), then 3.
    marks = {0: 14, 24: 14, 25: 10, 73: 10, 74: 7, 173: 7, 174: 5, 342: 5, 343: 4, 598: 4, 599: 3, 10**6: 3}
    for iteration, side in marks.items():
        assert scaled_side(0.05, iteration, 64, 64) == side, iteration
    assert SCALED_MIN_SIDE == 3
    # Whatever the image, never below the minimum (nor outside the image), never growing.
    for h, w in ((32, 32), (33, 250), (512, 512), (3, 40), (2, 2)):
        sides = [scaled_side(0.3, t, h, w) for t in range(0, 5000, 7)]
        assert all(b <= a for a, b in zip(sides, sides[1:], strict=False))
        assert min(sides) >= min(SCALED_MIN_SIDE, min(h, w) - 1, max(min(h, w) - 1, 1)) and max(sides) < max(h, w)


def test_the_paper_schedule_is_the_default_and_keeps_its_records_and_keys():
    paper = SquareConfig(eps=8, queries=100)
    assert paper.p_schedule == "paper" and "p_schedule" not in paper.as_dict()
    assert SquareConfig(eps=8, queries=100, p_schedule="scaled").as_dict()["p_schedule"] == "scaled"
    with pytest.raises(HarnessError, match="unknown p schedule"):
        SquareConfig(eps=8, queries=100, p_schedule="fast").validate()
    assert {"ce", "margin", "mce", "mmargin"} <= set(ORACLES)


def test_the_checkerboard_start_alternates_brightness_pixel_by_pixel():
    images = np.full((2, 3, 6, 6), 0.5, dtype=np.float32)
    x = stripe_init(images, 8 / 255, "checker", np.random.default_rng(0))
    delta = np.sign(x - images)
    assert np.all(delta[:, :, :, :-1] == -delta[:, :, :, 1:]) and np.all(delta[:, :, :-1] == -delta[:, :, 1:])
    assert np.all(delta[:, 0] == delta[:, 1]) and np.all(delta[:, 1] == delta[:, 2])  # brightness: all channels
    # The stripes are drawn as before the checkerboard existed: same seed, same stripes as the paper's runs.
    signs = init_signs((1, 3, 4, 5), "vertical", np.random.default_rng(9))
    bits = np.random.default_rng(9).integers(0, 2, size=(1, 3, 1, 5), dtype=np.int8)
    assert np.array_equal(signs, np.broadcast_to(2 * bits - 1, (1, 3, 4, 5)))


# ---------------------------------------------------------------- the attack with a masked oracle: its guarantees

class TinyScores:
    """A real, seeded, untrained small torch segmenter of 4 classes behind ``infer``."""

    def __init__(self) -> None:
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1)).eval()

    def infer(self, images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.net(torch.from_numpy(images)).numpy()


@pytest.mark.parametrize("loss, init", [("mce", "vertical"), ("mmargin", "checker")])
def test_masked_oracles_with_the_scaled_schedule_keep_the_guarantees(loss, init):
    engine = TinyScores()
    images = np.random.default_rng(2).random((3, 3, 32, 32), dtype=np.float32)
    labels = engine.infer(images).argmax(1)
    config = SquareConfig(eps=16, queries=40, loss=loss, init=init, p_schedule="scaled", seed=4)
    losses: list[np.ndarray] = []
    state = SquareAttack(config).run(engine, images, labels, on_iteration=lambda s: losses.append(s.best_loss.copy()))
    assert np.all(state.queries <= 40)
    assert np.abs(state.x_best - images).max() <= 16 / 255 + 1e-6 and 0 <= state.x_best.min() <= state.x_best.max() <= 1
    assert all(np.all(b >= a) for a, b in zip(losses, losses[1:], strict=False))
    assert np.allclose(Oracle(loss, labels).loss(engine.infer(state.x_best)), state.best_loss, atol=1e-5)
    again = SquareAttack(config).run(engine, images, labels)
    assert np.array_equal(again.x_best, state.x_best)


class ClassMapTarget:
    has_scores = False

    def infer(self, images: np.ndarray) -> np.ndarray:
        raise AssertionError("asked for scores")


def test_the_square_attack_refuses_a_target_without_scores_in_one_line():
    assert has_scores(object()) and has_scores(TinyScores()) and not has_scores(ClassMapTarget())
    images = np.zeros((1, 3, 8, 8), dtype=np.float32)
    with pytest.raises(HarnessError) as error:
        SquareAttack(SquareConfig(eps=8, queries=3)).run(ClassMapTarget(), images, np.zeros((1, 8, 8), np.int64))
    message = str(error.value)
    assert "\n" not in message and "class maps only" in message and "blackbox --attack hardlabel" in message


# ---------------------------------------------------------------- python -m harness blackbox on a class-map target

def _convention_target(folder, name: str):
    """A real ONNX graph of tests/onnx_conventions.py over the built-in data's 7 classes, and its card file."""
    import importlib.util
    from pathlib import Path

    from harness.targets.card import write_card

    path = Path(__file__).parents[2] / "onnx_conventions.py"
    spec = importlib.util.spec_from_file_location("onnx_conventions_h7", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    onnx_path, card = module.build_convention(name, folder / f"{name}.onnx", 7)
    card_path = folder / f"{name}.toml"
    write_card(card, card_path)
    return onnx_path, card_path


@pytest.fixture(scope="module")
def class_map_target(tmp_path_factory):
    """A graph whose output is an argmax (card output.kind = class_map)."""
    return _convention_target(tmp_path_factory.mktemp("class_map"), "argmax")


def test_blackbox_square_with_the_new_options_records_them(tmp_path, capsys):
    onnx_path, card_path = _convention_target(tmp_path, "softmax")  # scores: probabilities
    results = tmp_path / "results.json"
    assert main(["blackbox", "--onnx", str(onnx_path), "--card", str(card_path), "--n-images", "2", "--queries", "8",
                 "--loss", "mce", "--p-schedule", "scaled", "--colour", "grey", "--init", "checker",
                 "--json", str(results)]) == 0, capsys.readouterr().err
    assert "scaled p schedule, grey squares, mce oracle" in " ".join(capsys.readouterr().out.split())
    square = json.loads(results.read_text())["results"][1]
    assert square["attack"] == "square" and square["queries_per_image_max"] == 8
    assert square["params"] == {"eps": 8.0, "queries": 8, "p_init": 0.05, "init": "checker", "loss": "mce",
                                "seed": 0, "p_schedule": "scaled", "colour": "grey"}


def test_blackbox_hardlabel_runs_on_a_class_map_onnx_target_and_records_it(class_map_target, tmp_path, capsys):
    onnx_path, card_path = class_map_target
    results = tmp_path / "results.json"
    args = ["blackbox", "--onnx", str(onnx_path), "--card", str(card_path), "--attack", "hardlabel", "--n-images",
            "2", "--queries", "6", "--eps", "16", "--init", "both", "--json", str(results)]
    assert main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "hard-label attack" in out and "class maps only" in out
    records = json.loads(results.read_text())["results"]
    assert [(r["attack"], r["params"].get("init")) for r in records] == [
        ("none", None), ("hardlabel", "vertical"), ("hardlabel", "horizontal")]
    for record in records:
        assert record["model"] == "argmax" and record["engine"] == "ort" and record["n_images"] == 2
        assert record["target"]["kind"] == "onnx" and record["weights_sha256"] == record["target"]["sha256"]
    assert records[1]["queries"] == 12 and records[1]["queries_per_image_max"] == 6
    assert records[1]["params"] == {"eps": 16.0, "queries": 6, "init": "vertical", "seed": 0, "colour": "rgb"}
    assert records[1]["pixel_accuracy"] <= records[0]["pixel_accuracy"]


@pytest.mark.parametrize("extra, message", [
    (["--attack", "square"], "class maps only"),
    ([], "class maps only"),  # square is the default
    (["--attack", "hardlabel", "--loss", "mce"], "--loss applies to --attack square"),
    (["--attack", "hardlabel", "--p-schedule", "scaled", "--p-init", "0.1"], "--p-init, --p-schedule apply to"),
    (["--attack", "hardlabel", "--resume", "--seed", "77"], "no saved hard-label attack state of this run"),
])
def test_blackbox_refuses_what_does_not_apply_in_one_line(class_map_target, capsys, extra, message):
    onnx_path, card_path = class_map_target
    code = main(["blackbox", "--onnx", str(onnx_path), "--card", str(card_path), "--n-images", "1", "--queries",
                 "3", *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error:") and message in err, err


def test_the_auto_start_keeps_the_better_of_stripes_and_checkerboard_per_image():
    engine = TinyScores()
    images = np.random.default_rng(5).random((4, 3, 32, 32), dtype=np.float32)
    labels = engine.infer(images).argmax(1)
    state = SquareAttack(SquareConfig(eps=16, queries=2, init="auto", loss="mce", seed=3)).run(engine, images, labels)
    rng = np.random.default_rng(3)  # the attack's draws: the stripes, then the checkerboard as its first candidate
    stripes, checker = stripe_init(images, 16 / 255, "vertical", rng), stripe_init(images, 16 / 255, "checker", rng)
    oracle = Oracle("mce", labels)
    better = oracle.loss(engine.infer(checker)) > oracle.loss(engine.infer(stripes))
    assert np.array_equal(state.x_best, np.where(better[:, None, None, None], checker, stripes))
    assert np.all(state.queries == 2)
    # Squares come after it, with the schedule of a run without that candidate.
    assert SquareConfig(eps=8, queries=100, init="auto").side(1, 64, 64) == SquareConfig(eps=8, queries=100).side(
        0, 64, 64)


def test_grey_squares_move_every_channel_by_the_same_signed_eps():
    engine = TinyScores()
    images = np.full((2, 3, 32, 32), 0.5, dtype=np.float32)
    labels = engine.infer(images).argmax(1)
    config = SquareConfig(eps=16, queries=30, colour="grey", init="checker", loss="mmargin", seed=1)
    assert config.as_dict()["colour"] == "grey" and "colour" not in SquareConfig(eps=8, queries=5).as_dict()
    state = SquareAttack(config).run(engine, images, labels)
    delta = state.x_best - images
    assert np.all(delta[:, 0] == delta[:, 1]) and np.all(delta[:, 1] == delta[:, 2])
    assert np.allclose(np.abs(delta), np.float32(16 / 255))
    with pytest.raises(HarnessError, match="unknown square colour"):
        SquareConfig(eps=8, queries=5, colour="blue").validate()
