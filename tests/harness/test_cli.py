"""The CLI as a user runs it: real processes for error handling, in-process for the rest."""

import json
import subprocess
import sys

import pytest

from harness.checkpoints import read_metadata
from harness.cli import COMMANDS, main


def run_cli(*args, env_cache=None):
    env = None
    if env_cache is not None:
        import os

        env = {**os.environ, "HARNESS_CACHE": str(env_cache)}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("args, message", [
    (["eval", "--model", "nope"], "invalid choice"),
    (["train", "--model", "fcn-resnet50", "--epochs", "0"], "'0' is outside [1, 10000]"),
    (["train"], "one of the arguments --model --all is required"),
    (["eval", "--model", "fcn-resnet50", "--data", "voc"], "needs --data-root"),
    (["eval", "--model", "fcn-resnet50", "--data", "folder", "--data-root", "/nonexistent"], "not a directory"),
    (["eval", "--model", "fcn-resnet50", "--checkpoint", "/nonexistent.safetensors"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = run_cli(*args, env_cache=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_eval_without_a_trained_model_says_how_to_train(tmp_path):
    result = run_cli("eval", "--model", "fcn8s-vgg16", env_cache=tmp_path)
    assert result.returncode == 2
    assert "python -m harness train --model fcn8s-vgg16" in result.stderr


def test_train_then_eval_writes_checkpoint_and_results(tmp_path, capsys):
    ckpt = tmp_path / "m.safetensors"
    assert main(["train", "--model", "fcn-resnet50", "--epochs", "1", "--n-train", "32", "--out", str(ckpt)]) == 0
    meta = read_metadata(ckpt)
    assert meta["model"] == "fcn-resnet50" and meta["train"]["n_images"] == 32
    assert 0 <= meta["val_metrics"]["pixel_accuracy"] <= 1
    out = tmp_path / "results.json"
    assert main(["eval", "--model", "fcn-resnet50", "--checkpoint", str(ckpt), "--n-images", "8",
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == 1 and doc["results"][0]["attack"] == "none"
    assert doc["results"][0]["n_images"] == 8
    assert "pixel acc" in capsys.readouterr().out


def test_eval_finds_the_cached_checkpoint(trained_model, capsys):
    trained_model("fcn-resnet50")
    assert main(["eval", "--model", "fcn-resnet50", "--n-images", "16"]) == 0
    assert "clean" in capsys.readouterr().out


def test_models_lists_all_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "fcn8s-vgg16" in out and "fcn-resnet101" in out and "paper" in out
