"""The suite's ``[square]`` table runs what ``blackbox`` offers: the Square Attack with its later options and the
hard-label attack, whose records are the ones ``blackbox --json`` writes; the hard-label attack runs on class-map
targets and resumes as the Square Attack does.

Real parts only: ONNX graphs of tests/onnx_conventions.py with their cards, ONNX Runtime, the suite and blackbox
commands in this process, the state files in a cache of the test's own. Tiny settings: 2 images, a few queries.
"""

import json
import shutil
from pathlib import Path

import pytest

from harness.attacks.hard_label import HardLabelConfig
from harness.attacks.square import SquareConfig
from harness.cli import main
from harness.data import load_data
from harness.suite import square as suite_square
from harness.suite.config import SquareSpec, parse_suite
from harness.suite.square import SquareSubject, configs, run_square
from harness.targets.card import load_card, write_card
from harness.targets.target import onnx_target, target_engine
from reports.results import read_results

CLASSES = 7  # the built-in synthetic data's classes

SUITE = """
name = "blackbox-options"
batch_size = 4
threads = 1

[[targets]]
name = "unet"
onnx = "unet.onnx"
card = "unet.card.toml"

[[targets]]
name = "unet-map"
onnx = "argmax.onnx"
card = "argmax.card.toml"

[deployment]
engines = ["ort"]
precisions = ["fp32"]
n_images = 2

[square]
queries = 6
n_images = 2
"""

# [square] options -> the same attack as blackbox options.
CASES = {
    "hardlabel": ('attack = "hardlabel"\ncolour = "grey"\ninits = ["vertical", "auto"]\n',
                  ["--attack", "hardlabel", "--colour", "grey"], ("vertical", "auto")),
    "square-options": ('p_schedule = "scaled"\ncolour = "grey"\nloss = "mmargin"\ninits = ["checker"]\n',
                       ["--p-schedule", "scaled", "--colour", "grey", "--loss", "mmargin"], ("checker",)),
}


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory, convention_onnx) -> Path:
    """A user's repository: an ONNX file with scores and one whose output is a class map, with their cards."""
    folder = tmp_path_factory.mktemp("user-repo")
    for name, file in (("norm_outside", "unet"), ("argmax", "argmax")):
        path, card = convention_onnx(name, CLASSES)
        shutil.copy(path, folder / f"{file}.onnx")
        write_card(card, folder / f"{file}.card.toml")
    return folder


def _suite(folder: Path, case: str, out: Path) -> list[dict]:
    (folder / f"{case}.toml").write_text(SUITE + CASES[case][0])
    assert main(["suite", "--config", str(folder / f"{case}.toml"), "--out", str(out)]) == 0
    return read_results(out / "results.json")


def test_the_default_square_table_is_the_papers_attack_with_the_params_it_always_recorded():
    spec = parse_suite('[models]\nnames = ["fcn-resnet50"]\n[square]\n', "s.toml").square
    assert (spec.attack, spec.p_schedule, spec.colour, spec.loss, spec.inits) == \
        ("square", "paper", "rgb", "ce", ("vertical", "horizontal"))
    assert [c.as_dict() for c in configs(spec)] == [
        {"eps": 8.0, "queries": 1000, "p_init": 0.05, "init": init, "loss": "ce", "seed": 0, "curve_every": 0}
        for init in ("vertical", "horizontal")]


@pytest.mark.parametrize("case", list(CASES))
def test_the_suites_records_are_blackbox_records_of_the_same_attack(user_folder, tmp_path, monkeypatch, capsys, case):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    records = _suite(user_folder, case, tmp_path / "run")
    attack = "hardlabel" if case == "hardlabel" else "square"
    _, options, inits = CASES[case]
    attacked = [r for r in records if r["attack"] == attack and r["model"] == "unet"]
    assert [r["params"]["init"] for r in attacked] == list(inits)
    assert all(r["queries_per_image_max"] <= 6 and r["experiments"] == ["square"] for r in attacked)
    results = tmp_path / "blackbox.json"
    for init, record in zip(inits, attacked, strict=True):
        code = main(["blackbox", "--onnx", str(user_folder / "unet.onnx"), "--card",
                     str(user_folder / "unet.card.toml"), "--n-images", "2", "--queries", "6", "--init", init,
                     *options, "--json", str(results)])
        assert code == 0, capsys.readouterr().err
        blackbox = read_results(results)[1]
        for key in ("attack", "params", "pixel_accuracy", "mean_iou", "queries", "queries_per_image_max",
                    "weights_sha256", "engine", "precision", "n_images", "data"):
            assert record[key] == blackbox[key], key


def test_the_hard_label_attack_runs_on_a_class_map_target_and_a_second_run_reuses_it(user_folder, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    first = _suite(user_folder, "hardlabel", tmp_path / "run")
    suite = json.loads((tmp_path / "run" / "suite.json").read_text())
    assert not [s for s in suite["skipped"] if s["experiment"] == "square"]  # the class-map target is attacked
    attacked = {(r["model"], r["params"]["init"]): r for r in first if r["attack"] == "hardlabel"}
    assert set(attacked) == {(m, i) for m in ("unet", "unet-map") for i in ("vertical", "auto")}
    clean = {r["model"]: r for r in first if r["attack"] == "none" and "square" in r["experiments"]}
    for (model, _), record in attacked.items():
        assert record["pixel_accuracy"] <= clean[model]["pixel_accuracy"]  # the best is never worse than clean
        assert record["params"]["colour"] == "grey" and record["reused"] is False
    assert len(list((tmp_path / "cache" / "hardlabel").glob("suite-*.npz"))) == 4
    report = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "## Figure 4: hard-label attack" in report and "class maps only" in report
    assert "| unet-map | ort fp32 | auto |" in report  # the table shows the hard-label records
    again = {(r["model"], r["params"]["init"]): r for r in _suite(user_folder, "hardlabel", tmp_path / "again")
             if r["attack"] == "hardlabel"}
    for key, record in again.items():
        assert record["reused"] is True
        assert {k: v for k, v in record.items() if k not in ("seconds", "reused", "engine_seconds")} == \
            {k: v for k, v in attacked[key].items() if k not in ("seconds", "reused", "engine_seconds")}


def test_the_class_map_target_is_skipped_with_its_reason_for_the_square_attack(user_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    (user_folder / "square.toml").write_text(SUITE)
    assert main(["suite", "--config", str(user_folder / "square.toml"), "--out", str(tmp_path / "run")]) == 0
    skipped = json.loads((tmp_path / "run" / "suite.json").read_text())["skipped"]
    assert [s["model"] for s in skipped if s["experiment"] == "square"] == ["unet-map"]
    assert 'attack = "hardlabel"' in next(s["reason"] for s in skipped if s["experiment"] == "square")


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("attack", ["hardlabel", "square"])
def test_an_interrupted_run_continues_to_the_run_it_would_have_been(user_folder, tmp_path, monkeypatch, attack):
    data = load_data("synthetic", "val").subset(2)
    name = "argmax" if attack == "hardlabel" else "unet"  # the hard-label attack on the class-map target
    target = onnx_target(user_folder / f"{name}.onnx", load_card(user_folder / f"{name}.card.toml"), data)
    subject = SquareSubject(name, None, target.sha256, "ort", "fp32",
                            lambda: target_engine(target, "ort", "fp32", None, data), {})
    spec = SquareSpec(models=(), inits=("vertical",), queries=10, n_images=2, attack=attack)
    monkeypatch.setattr(suite_square, "SAVE_EVERY_ITERATIONS", 1)  # save after every iteration

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "whole"))
    whole = run_square([subject], spec, data).records[1]

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "stopped"))
    calls = []

    def stop_at_the_fourth(description: str, spent: int, total: int) -> None:
        calls.append(spent)
        if len(calls) == 4:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        run_square([subject], spec, data, on_progress=stop_at_the_fourth)
    resumed_calls = []
    resumed = run_square([subject], spec, data, on_progress=lambda d, s, t: resumed_calls.append(s)).records[1]
    assert resumed_calls[0] > calls[0]  # it went on from the saved iteration, not from the start
    assert resumed["reused"] is False and resumed["attack"] == attack
    for key in ("params", "pixel_accuracy", "mean_iou", "per_class_iou", "queries", "queries_per_image_max"):
        assert resumed[key] == whole[key], key
    assert isinstance(configs(spec)[0], HardLabelConfig if attack == "hardlabel" else SquareConfig)


FOLDER_SUITE = """
name = "binary-folder"
batch_size = 4
threads = 1

[data]
source = "folder"
root = "data"
image_size = "32x48"
mask_format = "binary"

[[targets]]
name = "unet"
onnx = "unet.onnx"
card = "unet.card.toml"

[deployment]
engines = ["ort"]
precisions = ["fp32"]
n_images = 2

[square]
attack = "hardlabel"
queries = 4
n_images = 2
"""


def test_a_folder_of_0_255_masks_at_a_non_square_size_runs_through_the_suite(tmp_path, monkeypatch, convention_onnx):
    """[data] image_size "HxW" and mask_format reach the data the suite loads (and its suite.json the report)."""
    import numpy as np
    from PIL import Image

    root = tmp_path / "repo"
    for sub in ("data/images", "data/masks"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(root / f"data/images/{i}.png")
        mask = np.zeros((40, 60), np.uint8)
        mask[10:30, 15 + i:45] = 255  # 0/255: a binary mask
        Image.fromarray(mask).save(root / f"data/masks/{i}.png")
    (root / "data/train.txt").write_text("0\n1\n")
    (root / "data/val.txt").write_text("2\n3\n")
    path, card = convention_onnx("norm_outside", 2)
    shutil.copy(path, root / "unet.onnx")
    write_card(card, root / "unet.card.toml")
    (root / "suite.toml").write_text(FOLDER_SUITE.replace('root = "data"', f'root = "{root / "data"}"'))
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    assert main(["suite", "--config", str(root / "suite.toml"), "--out", str(tmp_path / "run")]) == 0
    records = read_results(tmp_path / "run" / "results.json")
    assert {r["attack"] for r in records} == {"none", "hardlabel"}
    for record in records:
        assert record["data"]["classes"] == ["background", "foreground"]
        assert record["data"]["size"] == [32, 48]
    suite = json.loads((tmp_path / "run" / "suite.json").read_text())
    assert suite["suite"]["data"]["image_size"] == "32x48" and suite["suite"]["data"]["mask_format"] == "binary"
    assert main(["report", str(tmp_path / "run")]) == 0  # the report reads the run back
