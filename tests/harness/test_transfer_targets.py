"""``transfer`` with a user's source and target (issue 13): examples crafted on the user's PyTorch model (a
``--source-torch`` entry point), run on that model's ONNX export and its int8 variant, in one command.

The model is the small U-Net of tests/user_models.py (trained briefly once; weights kept in the session cache),
its ``torch.onnx.export``-ed file and one card naming both "unet": the same name makes them one model.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import user_models

from harness.attacks import make_attack
from harness.errors import HarnessError
from harness.targets.card import load_card, parse_card
from harness.targets.target import onnx_target, torch_model, torch_target
from harness.transfer import (
    EngineChoice,
    TransferSettings,
    adversarial_examples,
    parse_attacks,
    run_transfer,
    target_choices,
)

N_IMAGES = 8




@pytest.fixture(scope="module")
def user_model(tmp_path_factory, synthetic_train, session_cache):
    return user_models.make_user_model(tmp_path_factory.mktemp("user-unet"), synthetic_train, Path(session_cache))


@pytest.fixture
def in_model_folder(user_model, monkeypatch):
    """The user's shell: the module file's folder is the current directory (where --torch imports from)."""
    monkeypatch.chdir(user_model.folder)
    monkeypatch.syspath_prepend(str(user_model.folder))
    sys.modules.pop(user_models.MODULE_NAME, None)
    yield user_model
    sys.modules.pop(user_models.MODULE_NAME, None)


def _user_argv(model, *extra: str) -> list[str]:
    return ["transfer", "--source-torch", model.entry, "--source-weights", str(model.weights),
            "--source-card", str(model.card), "--onnx", str(model.onnx), "--card", str(model.card),
            "--engines", "ort", "--precisions", "fp32,int8", "--attacks", "fgsm", "--n-images", str(N_IMAGES),
            "--calibration-images", "32", *extra]


def test_examples_from_my_torch_model_on_my_int8_engine_in_one_command(in_model_folder, run_cli, tmp_path):
    model = in_model_folder
    results = tmp_path / "transfer.json"
    code, out, err = run_cli(_user_argv(model, "--json", str(results)))
    assert code == 0, err
    records = json.loads(results.read_text())["results"]
    assert {(r["model"], r["engine"], r["precision"], r["attack"]) for r in records} == {
        ("unet", "ort", p, a) for p in ("fp32", "int8") for a in ("none", "fgsm")}
    for r in records:
        assert r["target"]["kind"] == "onnx" and r["target"]["path"] == str(model.onnx)
        assert r["weights_sha256"] == r["target"]["sha256"] and r["size"] is None
        assert r["target"]["card"]["input"]["name"] == "input"
    adversarial = {r["precision"]: r for r in records if r["attack"] != "none"}
    clean = {r["precision"]: r for r in records if r["attack"] == "none"}
    for precision, r in adversarial.items():
        assert r["source_model"] == "unet" and r["white_box"] and r["source_engine"] == "torch"
        assert r["source_target"]["kind"] == "torch" and r["source_target"]["entry"] == model.entry
        # The examples crafted on the torch model hurt its ONNX export and the int8 variant of that export.
        assert r["pixel_accuracy"] < clean[precision]["pixel_accuracy"] - 0.05
    text = " ".join(out.split())
    assert "Table 2, targets on ort int8" in text and "Deployment gap" in text and "unet" in text

    # Same command: the examples come from the cache; another source card is another model, crafted anew.
    code, out, err = run_cli(_user_argv(model))
    assert code == 0, err
    assert "1 reused from the cache" in " ".join(out.split())
    other = tmp_path / "other.toml"
    other.write_text(model.card.read_text().replace('mean = "imagenet"', "mean = [0.5, 0.5, 0.5]"))
    argv = _user_argv(model)
    argv[argv.index("--source-card") + 1] = str(other)
    code, out, err = run_cli(argv)
    assert code == 0, err
    assert "0 reused from the cache" in " ".join(out.split())


def test_the_source_card_and_entry_are_part_of_the_examples_provenance(in_model_folder, synthetic_val):
    model = in_model_folder
    data = synthetic_val.subset(2)
    card = load_card(model.card)
    source = torch_target(model.entry, str(model.weights), card, data)
    attack = make_attack("fgsm", 8, 1)
    first = adversarial_examples("unet", torch_model(source, data), data, attack, TransferSettings(), target=source)
    assert first.examples.provenance["target"]["entry"] == model.entry
    again = adversarial_examples("unet", torch_model(source, data), data, attack, TransferSettings(), target=source)
    assert again.reused and again.path == first.path
    other = torch_target(model.entry, str(model.weights), dataclasses.replace(
        card, input=dataclasses.replace(card.input, mean=(0.5, 0.5, 0.5))), data)
    moved = adversarial_examples("unet", torch_model(other, data), data, attack, TransferSettings(), target=other)
    assert not moved.reused and moved.path != first.path


def test_api_refuses_an_onnx_source_and_a_target_without_an_engine(user_model, synthetic_val):
    data = synthetic_val.subset(2)
    target = onnx_target(user_model.onnx, load_card(user_model.card), data)
    attacks = parse_attacks("fgsm", 8)
    with pytest.raises(HarnessError, match="crafted white-box on a PyTorch model"):
        run_transfer({"unet": target}, ["unet"], ["unet"], [EngineChoice("ort", "fp32")], attacks, data,
                     TransferSettings())
    with pytest.raises(HarnessError, match="runs on --engines ort,trt"):
        target_choices("unet", target, [EngineChoice("torch", "fp32")])
    assert target_choices("unet", target, [EngineChoice("torch", "fp32"), EngineChoice("ort", "int8")]) == [
        EngineChoice("ort", "int8")]


@pytest.mark.parametrize(("argv", "message"), [
    (["--source-weights", "w.pt"], "--source-weights and --source-card complete --source-torch"),
    (["--source-card", "c.toml"], "--source-weights and --source-card complete --source-torch"),
    (["--source-torch", "nomodule:build", "--onnx", "unet.onnx", "--card", "unet.toml", "--engines", "ort"],
     "nomodule"),
    (["--source-torch", "user_unet:build", "--onnx", "unet.onnx", "--card", "unet.toml", "--engines", "torch"],
     "runs on --engines ort,trt"),
    (["--source-torch", "user_unet:build", "--source-weights", "unet.onnx"], "use --onnx FILE"),
    (["--onnx", "unet.onnx", "--card", "unet.toml", "--weights", "unet.pt"], "holds its own weights"),
    (["--onnx", "unet.onnx"], "inspect"),
])
def test_cli_refusals_are_one_line_with_exit_2(argv, message, in_model_folder, run_cli):
    code, _, err = run_cli(["transfer", *argv, "--n-images", "2"])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_user_model_named_like_a_built_in_one_is_refused(in_model_folder, run_cli, tmp_path):
    model = in_model_folder
    card = tmp_path / "named.toml"
    card.write_text(model.card.read_text().replace('name = "unet"', 'name = "fcn8s-vgg16"'))
    parse_card(card.read_text(), str(card))  # a valid card: only the name collides
    code, _, err = run_cli(["transfer", "--sources", "fcn8s-vgg16", "--onnx", str(model.onnx), "--card", str(card),
                            "--engines", "ort", "--n-images", "2"])
    assert code == 2 and "a built-in model is named fcn8s-vgg16 too" in err
