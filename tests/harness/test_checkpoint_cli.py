"""Checkpoints through the CLI: a record says what ran, bad files are one line, the cache never reuses a bad file."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from harness.checkpoints import default_checkpoint_path, load_checkpoint, read_metadata, save_checkpoint
from harness.data import data_key
from harness.data.synthetic import CLASS_NAMES
from harness.models import build_model

MODEL = "fcn8s-vgg16"


def _checkpoint(path: Path, model: str = MODEL, size: str = "reduced", class_names=CLASS_NAMES) -> Path:
    torch.manual_seed(0)
    save_checkpoint(path, build_model(model, len(class_names), size),
                    {"model": model, "size": size, "class_names": list(class_names)})
    return path


@pytest.fixture(scope="module")
def fcn8s_checkpoint(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "fcn8s.safetensors")


COMMANDS = {
    "eval": ["eval", "--n-images", "2"],
    "attack": ["attack", "--attack", "fgsm", "--n-images", "2"],
    "blackbox": ["blackbox", "--n-images", "1", "--queries", "2"],
    "export": ["export", "--format", "onnx", "--n-images", "2"],
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
@pytest.mark.parametrize(("extra", "expected"), [
    (["--model", "fcn-resnet50"], "holds fcn8s-vgg16, not fcn-resnet50; pass --model fcn8s-vgg16"),
    (["--model", MODEL, "--size", "paper"], "at size reduced, not paper; pass --size reduced"),
    (["--model", MODEL, "--weights", "w.pth"], "pass one of them"),
])
def test_every_command_refuses_a_checkpoint_that_contradicts_its_arguments(run_cli, fcn8s_checkpoint, command,
                                                                          extra, expected):
    code, out, err = run_cli([*command, *extra, "--checkpoint", str(fcn8s_checkpoint)])
    assert code == 2 and expected in err and err.count("\n") == 1, err


def test_a_checkpoint_for_other_classes_is_refused(run_cli, tmp_path):
    path = _checkpoint(tmp_path / "two.safetensors", class_names=["sky", "ground"])
    code, _, err = run_cli(["eval", "--model", MODEL, "--checkpoint", str(path), "--n-images", "2"])
    assert code == 2 and "2 classes (sky, ground)" in err and err.count("\n") == 1


def test_the_record_names_the_model_that_ran(run_cli, fcn8s_checkpoint, tmp_path):
    out_json = tmp_path / "r.json"
    code, _, err = run_cli(["eval", "--model", MODEL, "--checkpoint", str(fcn8s_checkpoint), "--n-images", "2",
                            "--json", str(out_json)])
    assert code == 0, err
    (record,) = json.loads(out_json.read_text())["results"]
    assert (record["model"], record["size"]) == (MODEL, "reduced")


@pytest.mark.parametrize("raw", ["{oops", "[1, 2]", json.dumps({"size": "reduced", "class_names": ["a", "b"]}),
                                 json.dumps({"model": MODEL, "size": "reduced", "class_names": 7})],
                         ids=["bad JSON", "a list", "no model", "class_names 7"])
def test_bad_metadata_through_the_cli_is_one_line(run_cli, tmp_path, monkeypatch, raw):
    model = build_model(MODEL, len(CLASS_NAMES))
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, str(path), metadata={"harness": raw})
    code, _, err = run_cli(["eval", "--model", MODEL, "--checkpoint", str(path), "--n-images", "2"])
    assert code == 2 and str(path) in err and err.count("\n") == 1 and "Traceback" not in err
    # The same file in the cache: ``models`` lists it as unreadable and still prints the table.
    cache = tmp_path / "cache"
    (cache / "checkpoints").mkdir(parents=True)
    shutil.copy(path, cache / "checkpoints" / "x.safetensors")
    _checkpoint(cache / "checkpoints" / "good.safetensors")
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    from harness.commands.models import _trained

    found, unreadable = _trained()
    assert list(found) == [(MODEL, "reduced")] and len(unreadable) == 1 and "x.safetensors" in unreadable[0]


def test_models_lists_unreadable_cached_files_and_exits_0(run_cli, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    (cache / "checkpoints").mkdir(parents=True)
    (cache / "checkpoints" / "empty.safetensors").write_bytes(b"")
    (cache / "checkpoints" / "dir.safetensors").mkdir()
    good = _checkpoint(cache / "checkpoints" / "good.safetensors")
    truncated = cache / "checkpoints" / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:100])
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    code, out, err = run_cli(["models"])
    assert code == 0 and err == ""
    assert out.count("unreadable, not listed") == 3 and "empty.safetensors" in out and "truncated" in out


@pytest.mark.parametrize("damage", ["truncated", "empty", "other model"])
def test_train_retrains_a_damaged_cached_checkpoint_instead_of_calling_it_cached(run_cli, tmp_path, monkeypatch,
                                                                                 session_cache, damage):
    cache = tmp_path / "cache"
    shutil.copytree(Path(session_cache) / "data", cache / "data")  # the synthetic scenes, not regenerated
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    from harness.data import load_data

    path = default_checkpoint_path(MODEL, "reduced", data_key(load_data("synthetic", "train")))
    if damage == "other model":
        _checkpoint(path, model="fcn16s-vgg16")
    else:
        _checkpoint(path)
        path.write_bytes(path.read_bytes()[:1000] if damage == "truncated" else b"")
    argv = ["train", "--model", MODEL, "--epochs", "1", "--n-train", "16"]
    code, out, err = run_cli(argv)
    assert code == 0 and "note: not reusing the cached checkpoint" in err and str(path) in err
    assert err.count("\n") == 1
    assert load_checkpoint(path)[1]["model"] == MODEL and read_metadata(path)["train"]["n_images"] == 16
    code, out, err = run_cli(argv)  # now intact: reused
    assert code == 0 and "cached" in out and err == ""
