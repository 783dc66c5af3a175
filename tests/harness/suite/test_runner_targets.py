"""A suite of the user's own models (``[[targets]]``) end to end, and ``check`` gating its records.

Real files only: ONNX graphs of tests/onnx_conventions.py with the cards that describe them (written with
harness.targets.card.write_card), a PyTorch entry point in a module file beside the suite, ONNX Runtime,
the suite command and the check command in this process. Tiny settings: a few images, a few queries.
"""

import hashlib
import json
import shutil
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from harness.cli import main
from harness.targets.card import write_card
from reports.regression import record_key
from reports.results import read_results

CLASSES = 7  # the built-in synthetic data's classes

ONNX_SUITE = """
name = "mine"
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
engines = ["torch", "ort"]
precisions = ["fp32", "int8"]
calibration_images = 8
n_images = 4

[square]
queries = 6
n_images = 2
inits = ["vertical", "horizontal"]

[check]
tolerance = 0
"""

TINY_MODULE = """
import torch
from torch import nn


def build() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 7, 3, padding=1))
"""

TORCH_SUITE = """
name = "mine-torch"
batch_size = 4
threads = 1

[[targets]]
name = "tiny"
torch = "userpkg.tiny:build"
weights = "tiny.pt"
card = "tiny.card.toml"

[[targets]]
name = "unet"
onnx = "unet.onnx"
card = "unet.card.toml"

[deployment]
engines = ["torch", "ort"]
precisions = ["fp32"]
n_images = 4

[whitebox]
columns = ["fgsm", "pgd-2"]
n_images = 4

[sweep]
steps = [1, 2]
n_images = 4

[transfer]
attacks = ["pgd-2"]
n_images = 4

[examples]
model = "tiny"
attack = "pgd-2"
n_images = 2

[square]
queries = 6
n_images = 2
inits = ["vertical", "horizontal"]
"""


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory, convention_onnx) -> Path:
    """A user's repository: two ONNX files with their cards, a torch module with weights, its card."""
    import torch

    folder = tmp_path_factory.mktemp("user-repo")
    for name, file in (("norm_outside", "unet"), ("argmax", "argmax")):
        path, card = convention_onnx(name, CLASSES)
        shutil.copy(path, folder / f"{file}.onnx")
        write_card(card, folder / f"{file}.card.toml")
    (folder / "userpkg").mkdir()
    (folder / "userpkg" / "__init__.py").write_text("")
    (folder / "userpkg" / "tiny.py").write_text(TINY_MODULE)
    torch.manual_seed(1)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                 torch.nn.Conv2d(8, CLASSES, 3, padding=1))
    torch.save(module.state_dict(), folder / "tiny.pt")
    (folder / "tiny.card.toml").write_text('schema = 1\n[input]\nmean = "imagenet"\nstd = "imagenet"\n')
    (folder / "robustness.toml").write_text(ONNX_SUITE)
    (folder / "torch.toml").write_text(TORCH_SUITE)
    return folder


@pytest.fixture(scope="module")
def onnx_run(user_folder, tmp_path_factory):
    """The ONNX suite run once from an empty cache of its own: (run directory, cache)."""
    root = tmp_path_factory.mktemp("onnx-run")
    out, cache = root / "run", root / "cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_CACHE", str(cache))
        patch.chdir(root)  # the suite's files are found beside it, not in the current directory
        assert main(["suite", "--config", str(user_folder / "robustness.toml"), "--out", str(out)]) == 0
    return out, cache


def test_a_suite_of_onnx_targets_writes_their_records_named_and_identified(onnx_run, user_folder):
    out, _ = onnx_run
    records = read_results(out / "results.json")
    assert len({record_key(r) for r in records}) == len(records)
    sha = hashlib.sha256((user_folder / "unet.onnx").read_bytes()).hexdigest()
    assert {r["model"] for r in records} == {"unet", "unet-map"}
    for record in records:
        assert record["target"]["kind"] == "onnx" and record["target"]["card"]["name"] == record["model"]
    unet = [r for r in records if r["model"] == "unet"]
    assert {r["target"]["sha256"] for r in unet} == {sha}
    # Clean evaluation on every deployment pair an ONNX file runs: its own file on ort, its int8 variant.
    deployment = {(r["engine"], r["precision"]) for r in records if "deployment" in r["experiments"]}
    assert deployment == {("ort", "fp32"), ("ort", "int8")}
    square = [r for r in records if r["attack"] == "square"]
    assert {r["model"] for r in square} == {"unet"} and len(square) == 2
    assert all(r["engine"] == "ort" and r["queries_per_image_max"] <= 6 for r in square)
    suite = json.loads((out / "suite.json").read_text())
    assert suite["trained"] == [] and suite["models"] == {}
    assert suite["targets"]["unet"]["sha256"] == sha
    skipped = {(s["model"], s["experiment"], s.get("engine")): s["reason"] for s in suite["skipped"]}
    assert "class map" in skipped["unet-map", "square", None]  # no scores: said, not silently left out
    assert "no PyTorch model" in skipped["unet", "deployment", "torch"]


def test_check_gates_the_targets_records_and_fails_when_the_baseline_was_better(onnx_run, tmp_path, run_cli):
    out, _ = onnx_run
    code, stdout, _ = run_cli(["check", "--baseline", str(out / "results.json"), "--results",
                               str(out / "results.json")])
    assert code == 0 and "tolerance 0 pt" in stdout and "check passed" in stdout  # [check] tolerance = 0
    baseline = json.loads((out / "results.json").read_text())
    record = next(r for r in baseline["results"] if r["model"] == "unet" and r["precision"] == "int8")
    record["pixel_accuracy"] = min(1.0, record["pixel_accuracy"] + 0.001)  # the baseline was 0.1 point better
    better = tmp_path / "baseline.json"
    better.write_text(json.dumps(baseline))
    code, stdout, _ = run_cli(["check", "--baseline", str(better), "--results", str(out / "results.json")])
    assert code == 1 and "check FAILED: 1 of" in stdout and "unet ort int8 none n=4" in stdout


def test_a_changed_onnx_file_is_gated_against_the_old_numbers_and_said(onnx_run, user_folder, tmp_path, run_cli,
                                                                        monkeypatch):
    out, cache = onnx_run
    folder = tmp_path / "repo"
    shutil.copytree(user_folder, folder, ignore=shutil.ignore_patterns("userpkg"))
    model = onnx.load(str(folder / "unet.onnx"))
    weight = next(i for i in model.graph.initializer if numpy_helper.to_array(i).ndim == 4)
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.5, weight.name))  # "retrained"
    onnx.save(model, str(folder / "unet.onnx"))
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    code, _, _ = run_cli(["suite", "--config", str(folder / "robustness.toml"), "--out", str(tmp_path / "run")])
    assert code == 0
    again = read_results(tmp_path / "run" / "results.json")
    assert all(r["reused"] is False for r in again if r["attack"] == "square")  # no stale Square run
    code, stdout, stderr = run_cli(["check", "--baseline", str(out / "results.json"), "--results",
                                    str(tmp_path / "run" / "results.json"), "--tolerance", "100"])
    assert code == 0, stderr
    assert "note: target unet changed since the baseline (sha256 " in stdout
    assert "the new version is gated against the previous one's numbers" in stdout
    assert "note: target unet-map" not in stdout  # unchanged


def test_a_torch_target_runs_the_white_box_experiments_and_transfers_to_the_onnx_target(user_folder, tmp_path,
                                                                                        run_cli, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # the module is imported from the suite's folder
    code, stdout, stderr = run_cli(["suite", "--config", str(user_folder / "torch.toml"), "--out",
                                    str(tmp_path / "run")])
    assert code == 0, stderr
    records = read_results(tmp_path / "run" / "results.json")
    table1 = {r["attack"] for r in records if "table1" in r["experiments"]}
    assert table1 == {"none", "fgsm", "pgd"} and {r["model"] for r in records if "table1" in r["experiments"]} \
        == {"tiny"}
    assert len([r for r in records if "sweep" in r["experiments"] and r["attack"] == "pgd"]) == 2
    transferred = [r for r in records if r.get("source_model") == "tiny" and r["model"] == "unet"]
    assert [(r["engine"], r["precision"], r["source_target"]["kind"]) for r in transferred] == \
        [("ort", "fp32", "torch")]
    sha = hashlib.sha256((user_folder / "tiny.pt").read_bytes()).hexdigest()
    assert {r["target"]["sha256"] for r in records if r["model"] == "tiny"} == {sha}
    assert (tmp_path / "run" / "data" / "examples.npz").is_file()
    square = {(r["model"], r["engine"]) for r in records if r["attack"] == "square"}
    assert square == {("tiny", "torch"), ("unet", "ort")}  # a torch target through its own engine
    assert "not run: unet: table1 skipped: white-box attacks need the PyTorch model" in stdout


def test_an_fp16_file_runs_as_fp16_and_its_missing_fp32_variant_is_said(convention_onnx, tmp_path, run_cli,
                                                                        monkeypatch):
    path, card = convention_onnx("fp16_io", CLASSES)
    shutil.copy(path, tmp_path / "half.onnx")
    write_card(card, tmp_path / "half.card.toml")
    (tmp_path / "s.toml").write_text('[[targets]]\nname = "half"\nonnx = "half.onnx"\ncard = "half.card.toml"\n'
                                     '[deployment]\nengines = ["ort"]\nprecisions = ["fp32", "fp16"]\nn_images = 2\n')
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    code, stdout, stderr = run_cli(["suite", "--config", str(tmp_path / "s.toml"), "--out", str(tmp_path / "run")])
    assert code == 0, stderr
    records = read_results(tmp_path / "run" / "results.json")
    assert [(r["engine"], r["precision"]) for r in records] == [("ort", "fp16")]  # never labelled fp32
    assert "not run: half: deployment on ort fp32 skipped: " in stdout and "fp16 graph already" in stdout


@pytest.mark.parametrize("case, message", [
    ("card_classes", "bad.toml: [[targets]] #1 (unet): ONNX file"),
    ("card_layout", "bad.toml: [[targets]] #1 (unet): ONNX file"),
    ("no_card", "bad.toml: [[targets]] #1 (unet): cannot tell how to feed ONNX file"),
    ("missing_module", "bad.toml: [[targets]] #1 (tiny): --torch nowhere.tiny:build: no module 'nowhere'"),
    ("raising_build", "bad.toml: [[targets]] #1 (tiny): --torch broken_model:build: build() raised ValueError"),
    ("junk_onnx", "bad.toml: [[targets]] #1 (unet): "),
    ("plan_without_gpu", "bad.toml: [[targets]] #1 (unet): engine trt on cuda is not usable here"),
])
def test_a_target_that_does_not_fit_is_one_line_before_any_work(user_folder, tmp_path, run_cli, monkeypatch, case,
                                                                message):
    folder = tmp_path / "repo"
    shutil.copytree(user_folder, folder)
    card = (folder / "unet.card.toml").read_text()
    table = '[[targets]]\nname = "unet"\nonnx = "unet.onnx"\ncard = "unet.card.toml"\n'
    if case == "card_classes":
        (folder / "unet.card.toml").write_text(card.replace("num_classes = 7", "num_classes = 3"))
    elif case == "card_layout":
        (folder / "unet.card.toml").write_text(card.replace('layout = "NCHW"', 'layout = "NHWC"', 1))
    elif case == "no_card":
        table = '[[targets]]\nname = "unet"\nonnx = "unet.onnx"\n'
    elif case == "missing_module":
        table = '[[targets]]\nname = "tiny"\ntorch = "nowhere.tiny:build"\n'
    elif case == "raising_build":
        (folder / "broken_model.py").write_text("def build():\n    raise ValueError('no weights here')\n")
        table = '[[targets]]\nname = "tiny"\ntorch = "broken_model:build"\n'
    elif case == "junk_onnx":
        (folder / "unet.onnx").write_bytes(b"\x08\x07 not a protobuf" * 100)
    else:
        from engines.availability import tensorrt_missing

        if tensorrt_missing() is None:
            pytest.skip("TensorRT runs here")
        (folder / "model.plan").write_bytes(b"not a plan")
        table = '[[targets]]\nname = "unet"\nplan = "model.plan"\nprecision = "fp16"\ncard = "unet.card.toml"\n'
    (folder / "bad.toml").write_text(table + "[square]\nqueries = 6\nn_images = 2\n")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    code, stdout, stderr = run_cli(["suite", "--config", str(folder / "bad.toml"), "--out", str(tmp_path / "run")])
    assert code == 2
    assert stderr.startswith("error: ") and message in stderr and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr and not (tmp_path / "run").exists()
