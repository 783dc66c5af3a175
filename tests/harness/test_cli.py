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


def in_process(capsys, argv):
    """``python -m harness ARGV`` in this process: (exit code, stderr)."""
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, option", [
    (["suite", "--out", ""], "--out"),  # read as "not given", it would write runs/NAME instead
    (["eval", "--model", "fcn8s-vgg16", "--json", ""], "--json"),
    (["report", ""], "RUN_DIR"),
    (["--cache-dir", "", "models"], "--cache-dir"),  # read as "not given", it would use ~/.cache/harness
    (["check", "--baseline", "", "--results", "r.json"], "--baseline"),
])
def test_an_empty_value_is_refused_never_read_as_not_given(tmp_path, monkeypatch, capsys, argv, option):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    code, err = in_process(capsys, argv)
    assert code == 2 and err.count("\n") == 1 and f"argument {option}: the value is empty" in err
    assert list(tmp_path.iterdir()) == []  # nothing written: no runs/, no cache


@pytest.mark.parametrize("argv, message", [
    (["--data-root", "."], "--data-root . is read by --data voc or --data folder only"),
    (["--data", "folder", "--data-root", ".", "--data-seed", "3"], "--data-seed 3 selects synthetic scenes"),
])
def test_a_data_option_the_chosen_data_ignores_is_refused(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    code, err = in_process(capsys, ["eval", "--model", "fcn8s-vgg16", *argv])
    assert code == 2 and message in err and err.count("\n") == 1


def test_the_advice_to_train_names_the_size_and_data_options_that_select_the_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    code, err = in_process(capsys, ["eval", "--model", "fcn8s-vgg16", "--size", "paper", "--image-size", "32",
                            "--data-seed", "5", "--n-images", "1"])
    assert code == 2
    assert "run: python -m harness train --model fcn8s-vgg16 --size paper --image-size 32 --data-seed 5" in err


def test_control_characters_read_from_a_file_are_shown_escaped_in_the_error_line(tmp_path, capsys):
    record = {"model": "evil\x1b[2J\u202e", "engine": "torch", "precision": "fp32", "attack": "none", "params": {},
              "n_images": 1, "pixel_accuracy": 0.5, "mean_iou": 0.5, "per_class_iou": [0.5], "queries": 1,
              "seconds": 0.0}
    (tmp_path / "base.json").write_text(json.dumps({"schema": 1, "results": [record]}))
    (tmp_path / "res.json").write_text(json.dumps({"schema": 1, "results": [{**record, "model": "other"}]}))
    code, err = in_process(capsys, ["check", "--baseline", str(tmp_path / "base.json"), "--results",
                                    str(tmp_path / "res.json")])
    assert code == 2 and err.count("\n") == 1
    assert "\x1b" not in err and "\u202e" not in err and "evil\\x1b[2J\\u202e" in err


def test_names_the_terminal_cannot_encode_are_escaped_not_fatal(tmp_path):
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"schema": 1, "results": [
        {"model": "m", "engine": "torch", "precision": "fp32", "attack": "none", "params": {}, "n_images": 1,
         "pixel_accuracy": 0.5, "mean_iou": 0.5, "per_class_iou": [0.5], "queries": 1, "seconds": 0.0}]}))
    import os

    env = {**os.environ, "PYTHONIOENCODING": "ascii", "LC_ALL": "C"}
    result = subprocess.run([sys.executable, "-m", "harness", "check", "--results", str(results), "--baseline",
                             str(tmp_path / "bäse.json"), "--update-baseline"], capture_output=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert b"wrote " in result.stdout and b"b\\xe4se.json" in result.stdout and (tmp_path / "bäse.json").exists()


def test_minus_zero_is_zero():
    from harness.commands.common import float_in

    value = float_in(0, 100)("-0")
    assert value == 0 and str(value) == "0.0"


def test_a_command_module_that_cannot_be_imported_is_one_line_exit_2(tmp_path):
    # A broken install (a missing dependency, a half-copied module) fails while the parser is built.
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'harness.commands.report':\n            raise ImportError('No module named reportlib')\n"
        "sys.meta_path.insert(0, Block())\n")
    import os

    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-m", "harness", "models"], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: the harness cannot start: No module named reportlib")
