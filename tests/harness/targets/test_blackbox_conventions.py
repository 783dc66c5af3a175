"""Black-box attacks on a user's ONNX file: every I/O convention of tests/onnx_conventions.py through
``blackbox --onnx FILE --card CARD``, and the Square Attack's guarantees (budget, ε-ball, never worse, resume)
on such a target through the engine and its card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx_conventions
import pytest
from PIL import Image

from engines.ort_engine import OrtEngine
from harness.attacks.square import SquareAttack, SquareConfig
from harness.attacks.square_state import load_state, save_state
from harness.fileio import sha256_file
from harness.targets.card import write_card

SCORED = tuple(c for c in onnx_conventions.CONVENTIONS if c != "argmax")
TWO_CLASS = ("sigmoid", "binary_logits")
QUERIES = 12


def _folder(root: Path, classes: list[str]) -> Path:
    """An image folder of 64x64 RGB images whose masks use every class of ``classes``."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    rng = np.random.default_rng(1)
    for i in range(6):
        mask = np.zeros((64, 64), np.uint8)
        mask[8:40, 8:40] = 1
        if len(classes) > 2:
            mask[40:60, 30:60] = 2
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("blackbox-data")
    return {3: _folder(root / "three", ["background", "object", "edge"]),
            2: _folder(root / "two", ["background", "object"])}


def _target(convention_onnx, name: str, tmp_path: Path) -> tuple[Path, Path, int]:
    classes = 2 if name in TWO_CLASS else 3
    path, card = convention_onnx(name, classes)
    card_path = tmp_path / f"{name}.toml"
    write_card(card, card_path)
    return path, card_path, classes


def _data(folder: Path) -> list[str]:
    return ["--data", "folder", "--data-root", str(folder), "--image-size", "64", "--n-images", "2"]


@pytest.mark.parametrize("name", SCORED)
def test_square_attack_runs_on_every_convention_with_scores(name, convention_onnx, folders, run_cli, tmp_path):
    path, card, classes = _target(convention_onnx, name, tmp_path)
    out = tmp_path / "square.json"
    code, _, err = run_cli(["blackbox", "--onnx", str(path), "--card", str(card), *_data(folders[classes]),
                            "--queries", str(QUERIES), "--seed", "3", "--json", str(out)])
    assert code == 0, err
    records = {r["attack"]: r for r in json.loads(out.read_text())["results"]}
    assert set(records) == {"none", "square"}
    attacked = records["square"]
    assert 0 < attacked["queries"] <= 2 * QUERIES  # per image, the initial query included
    assert attacked["target"]["sha256"] == sha256_file(path) and attacked["engine"] == "ort"
    assert attacked["params"]["queries"] == QUERIES and attacked["model"] == records["none"]["model"]


def test_a_class_map_target_refuses_square_and_takes_the_hard_label_attack(convention_onnx, folders, run_cli,
                                                                          tmp_path):
    path, card, _ = _target(convention_onnx, "argmax", tmp_path)
    code, _, err = run_cli(["blackbox", "--onnx", str(path), "--card", str(card), *_data(folders[3]),
                            "--queries", str(QUERIES)])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "hardlabel" in err
    out = tmp_path / "hardlabel.json"
    code, _, err = run_cli(["blackbox", "--attack", "hardlabel", "--onnx", str(path), "--card", str(card),
                            *_data(folders[3]), "--queries", str(QUERIES), "--json", str(out)])
    assert code == 0, err
    attacked = next(r for r in json.loads(out.read_text())["results"] if r["attack"] == "hardlabel")
    assert 0 < attacked["queries"] <= 2 * QUERIES


@pytest.mark.parametrize("name", ["norm_outside", "nhwc+softmax", "uint8_norm_inside", "quarter"])
def test_square_guarantees_hold_on_a_users_onnx_target(name, convention_onnx, folders, tmp_path):
    from harness.data import load_data

    path, card = convention_onnx(name, 3)
    data = load_data("folder", "val", str(folders[3]), 64)
    images, labels = (np.ascontiguousarray(t.numpy()) for t in data.tensors(slice(None)))
    config = SquareConfig(eps=8, queries=40, p_init=0.3, seed=5)
    radius = config.radius
    with OrtEngine(path, card=card) as engine:
        whole = SquareAttack(config).run(engine, images, labels)
        done: list[int] = []
        stopped = SquareAttack(config).run(engine, images, labels, on_iteration=lambda s: done.append(s.iteration),
                                           should_stop=lambda: done[-1] >= 10)
        save_state(tmp_path / "state.npz", stopped, {"run": name})
        resumed = SquareAttack(config).run(engine, images, labels,
                                           state=load_state(tmp_path / "state.npz", {"run": name}, config, images,
                                                            labels))
        best_scores = engine.infer(whole.x_best.astype(np.float32))
    assert int(whole.queries.max()) <= config.queries  # the budget, the initial query included
    assert float(np.abs(whole.x_best - images).max()) <= radius + 1e-6  # the ε-ball
    assert whole.x_best.min() >= 0 and whole.x_best.max() <= 1
    losses = [p.mean_loss for p in whole.curve]
    assert all(b >= a - 1e-9 for a, b in zip(losses, losses[1:], strict=False))  # never worse
    assert np.array_equal(best_scores.argmax(1), whole.best_pred)  # the kept class map is the engine's
    assert np.array_equal(resumed.x_best, whole.x_best) and np.array_equal(resumed.queries, whole.queries)
    assert resumed.curve == whole.curve
