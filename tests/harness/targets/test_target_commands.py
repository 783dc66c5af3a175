"""``eval``, ``attack``, ``whitebox`` and ``sweep`` on a user's own models, end to end through the CLI.

Real parts: torchvision's LR-ASPP MobileNetV3 (random weights, 3 classes) from a module file in the current
directory (``--torch usermodels:build``) and exported with ``torch.onnx.export`` (``--onnx``); a small U-Net
whose normalisation is outside the model; a folder of 64x64 images with 3-class masks."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx_conventions
import pytest
import torch
from PIL import Image

CARD = """\
name = "lraspp"
num_classes = 3

[input]
name = "input"
mean = "imagenet"
std = "imagenet"

[output]
name = "out"
"""

MODULE = """\
import torch
import torchvision
from torch import nn


def build(seed=0):
    torch.manual_seed(seed)
    return torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                      num_classes=3)


def build_seed1():
    return build(1)


class TinyUNet(nn.Module):
    \"\"\"Two levels, a skip connection; takes ImageNet-normalised images (the normalisation is outside).\"\"\"

    def __init__(self, classes=3):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.low = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                                 nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
        self.head = nn.Conv2d(24, classes, 1)

    def forward(self, x):
        skip = self.down(x)
        return self.head(torch.cat([skip, self.low(skip)], 1))


def unet():
    torch.manual_seed(0)
    return TinyUNet()
"""

UNET_CARD = """\
name = "unet"

[input]
mean = "imagenet"
std = "imagenet"
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with the user's module, cards and a 3-class image folder (10 images: 8 train, 2 val)."""
    root = tmp_path_factory.mktemp("user-target")
    (root / "usermodels.py").write_text(MODULE)
    (root / "card.toml").write_text(CARD)
    (root / "unet.toml").write_text(UNET_CARD)
    data = root / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    (data / "classes.txt").write_text("background\nobject\nedge\n")
    rng = np.random.default_rng(0)
    for i in range(10):
        image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        mask[16:48, 16:48] = 1
        mask[16:48, 30:34] = 2
        Image.fromarray(image).save(data / "images" / f"{i:02d}.png")
        Image.fromarray(mask).save(data / "masks" / f"{i:02d}.png")
    return root


@pytest.fixture
def in_workdir(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    yield workdir
    sys.modules.pop("usermodels", None)


DATA = ["--data", "folder", "--data-root", "data", "--image-size", "64"]


def _record(path: Path, attack: str = "none") -> dict:
    return next(r for r in json.loads(path.read_text())["results"] if r["attack"] == attack)


def _scores(record: dict) -> tuple:
    return record["pixel_accuracy"], record["mean_iou"], record["per_class_iou"]


def test_eval_of_a_torch_entry_point_with_its_card(run_cli, in_workdir):
    code, out, err = run_cli(["eval", "--torch", "usermodels:build", "--card", "card.toml", *DATA,
                              "--json", "torch.json"])
    assert code == 0, err
    record = _record(in_workdir / "torch.json")
    assert record["model"] == "lraspp" and record["engine"] == "torch" and record["n_images"] == 2
    assert record["target"]["kind"] == "torch" and record["target"]["entry"] == "usermodels:build"
    assert record["target"]["card"]["input"]["mean"] == [0.485, 0.456, 0.406]
    assert "lraspp (torch)" in out


def test_its_onnx_export_with_the_card_scores_the_same_on_ort(run_cli, in_workdir):
    path, _ = onnx_conventions.build_lraspp(in_workdir / "lraspp.onnx", num_classes=3)
    code, _, err = run_cli(["eval", "--onnx", str(path), "--card", "card.toml", *DATA, "--json", "onnx.json"])
    assert code == 0, err
    code, _, err = run_cli(["eval", "--torch", "usermodels:build", "--card", "card.toml", *DATA,
                            "--json", "torch.json"])
    assert code == 0, err
    onnx_record, torch_record = _record(in_workdir / "onnx.json"), _record(in_workdir / "torch.json")
    assert onnx_record["engine"] == "ort" and onnx_record["target"]["kind"] == "onnx"
    assert onnx_record["target"]["sha256"] == onnx_record["weights_sha256"]
    np.testing.assert_allclose(_scores(onnx_record)[:2], _scores(torch_record)[:2], atol=2e-3)
    # Without its card the file cannot be told apart from a graph at the boundary: refused, never guessed.
    code, _, err = run_cli(["eval", "--onnx", str(path), *DATA])
    assert code == 2 and "inspect" in err and "--card card.toml" in err and err.count("\n") == 1
    # White-box attacks need the PyTorch model: the line names what applies.
    code, _, err = run_cli(["attack", "--onnx", str(path), "--card", "card.toml", "--attack", "fgsm", *DATA])
    assert code == 2 and "blackbox" in err and "transfer" in err and err.count("\n") == 1


def test_attack_pgd_on_a_torch_entry_point(run_cli, in_workdir):
    code, out, err = run_cli(["attack", "--torch", "usermodels:build", "--card", "card.toml", "--attack", "pgd",
                              "--steps", "2", *DATA, "--json", "attack.json", "--save-adv", "adv"])
    assert code == 0, err
    clean, adversarial = _record(in_workdir / "attack.json"), _record(in_workdir / "attack.json", "pgd")
    assert clean["model"] == adversarial["model"] == "lraspp" and adversarial["params"]["steps"] == 2
    assert adversarial["target"]["kind"] == "torch" and adversarial["queries"] == 2 * 2
    assert adversarial["pixel_accuracy"] <= clean["pixel_accuracy"]
    assert [p.name for p in (in_workdir / "adv").iterdir()] == ["lraspp--torch--pgd-2--eps8--seed0.npz"]


def test_whitebox_and_sweep_take_one_torch_target(run_cli, in_workdir):
    code, out, err = run_cli(["whitebox", "--torch", "usermodels:unet", "--card", "unet.toml", "--columns",
                              "fgsm,pgd-best-2", *DATA, "--json", "wb.json"])
    assert code == 0, err
    records = json.loads((in_workdir / "wb.json").read_text())["results"]
    assert [(r["model"], r["attack"]) for r in records] == [("unet", "none"), ("unet", "fgsm"), ("unet", "pgd-best")]
    code, out, err = run_cli(["sweep", "--torch", "usermodels:unet", "--card", "unet.toml", "--sweep-steps", "1,2",
                              *DATA, "--json", "sweep.json", "--png", "sweep.png"])
    assert code == 0, err
    assert (in_workdir / "sweep.png").is_file()
    code, _, err = run_cli(["whitebox", "--torch", "usermodels:unet", "--models", "fcn8s-vgg16", *DATA])
    assert code == 2 and "--models and a target option" in err


def test_weights_wrapped_by_a_training_script_are_unwrapped(run_cli, in_workdir):
    sys.path.insert(0, str(in_workdir))
    try:
        import usermodels
    finally:
        sys.path.remove(str(in_workdir))
    state = {f"module.{k}": v for k, v in usermodels.build(1).state_dict().items()}  # DataParallel's keys
    torch.save({"model": state, "epoch": 3, "args": argparse.Namespace(lr=0.01)}, in_workdir / "ckpt.pth")
    code, _, err = run_cli(["eval", "--torch", "usermodels:build", "--weights", "ckpt.pth", "--card", "card.toml",
                            *DATA, "--json", "weights.json"])
    assert code == 0, err
    code, _, err = run_cli(["eval", "--torch", "usermodels:build_seed1", "--card", "card.toml", *DATA,
                            "--json", "seed1.json"])
    assert code == 0, err
    loaded, built = _record(in_workdir / "weights.json"), _record(in_workdir / "seed1.json")
    assert _scores(loaded) == _scores(built)
    assert loaded["target"]["sha256"] == loaded["weights_sha256"] != built["weights_sha256"]
    # Strict: a state dict of another model is one line with the counts and the first keys.
    torch.save(usermodels.unet().state_dict(), in_workdir / "unet.pth")
    code, _, err = run_cli(["eval", "--torch", "usermodels:build", "--weights", "unet.pth", "--card", "card.toml",
                            *DATA])
    assert code == 2 and "keys missing (first 'backbone." in err and "unexpected (first 'down.0.weight')" in err


def test_a_unet_with_normalisation_outside_is_fed_normalised_images(in_workdir):
    from harness.data import load_data
    from harness.errors import HarnessError
    from harness.targets.card import load_card
    from harness.targets.target import module_identity, onnx_target, target_engine, torch_model, torch_target

    data = load_data("folder", "val", "data", 64)
    target = torch_target("usermodels:unet", None, load_card("unet.toml"), data)
    model, source = torch_model(target, data)
    sys.path.insert(0, str(in_workdir))
    try:
        import usermodels
    finally:
        sys.path.remove(str(in_workdir))
    images, _ = data.tensors(slice(None))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    unet = usermodels.unet().eval()
    with torch.no_grad():
        expected = unet((images - mean) / std)
        torch.testing.assert_close(model(images), expected, rtol=1e-5, atol=1e-5)
    # The source is identified by more than the weights: card, structure, state dict and scores on one image.
    with torch.no_grad():
        identity = module_identity(target, model, model(images[:1]))
    assert source["sha256"] == identity != target.sha256 and source["entry"] == "usermodels:unet"
    # Its ONNX export (normalisation still outside the graph) through ONNX Runtime and the same card.
    path = in_workdir / "unet.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(unet, (images[:1],), str(path), input_names=["x"], output_names=["y"], opset_version=17,
                          dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}, "y": {0: "N", 2: "H", 3: "W"}}, dynamo=False)
    onnx = onnx_target(path, load_card("unet.toml"), data)
    assert onnx.name == "unet" and onnx.card.num_classes == 3
    with target_engine(onnx, "ort", "fp32", None, data) as engine:
        np.testing.assert_allclose(engine.infer(images.numpy()), expected.numpy(), rtol=1e-4, atol=1e-4)
    with pytest.raises(HarnessError, match="cannot tell how to feed"):  # no card: its normalisation is outside
        onnx_target(path, None, data)


HOSTILE = {
    "missing onnx file": (["eval", "--onnx", "missing.onnx", "--card", "card.toml"], "does not exist"),
    "missing card": (["eval", "--torch", "usermodels:build", "--card", "nope.toml"], "nope.toml"),
    "wrong card field": (["eval", "--torch", "usermodels:build", "--card", "card.toml", "--card-set",
                          "input.layout=NCWH"], "input.layout"),
    "unknown card field": (["eval", "--torch", "usermodels:build", "--card-set", "input.colour=rgb"],
                           "not a card field"),
    "class count mismatch": (["eval", "--torch", "usermodels:build", "--card", "card.toml", "--card-set",
                              "num_classes=5"], "has 5 classes"),
    "class names mismatch": (["eval", "--torch", "usermodels:build", "--card", "card.toml", "--card-set",
                              'class_names=["background", "edge", "object"]'], "silent relabelling"),
    "output name missing": (["eval", "--torch", "usermodels:build", "--card", "card.toml", "--card-set",
                             "output.name=logits"], "output.name"),
    "card on a built-in model": (["eval", "--model", "fcn8s-vgg16", "--card", "card.toml"], "built-in"),
    "size on a torch target": (["eval", "--torch", "usermodels:build", "--size", "paper"], "--size applies"),
    "checkpoint on a torch target": (["eval", "--torch", "usermodels:build", "--checkpoint", "x.safetensors"],
                                     "takes --weights"),
    "weights on an onnx target": (["eval", "--onnx", "lraspp.onnx", "--weights", "w.pth"], "holds its own weights"),
    "onnx as checkpoint": (["eval", "--model", "fcn8s-vgg16", "--checkpoint", "lraspp.onnx"],
                           "that is an ONNX file: use --onnx FILE"),
    "onnx as weights": (["eval", "--torch", "usermodels:build", "--weights", "lraspp.onnx"],
                        "that is an ONNX file: use --onnx FILE"),
    "torch target on ort": (["eval", "--torch", "usermodels:build", "--card", "card.toml", "--engine", "ort"],
                            "runs on --engine torch"),
    "missing module": (["eval", "--torch", "h3_nowhere:build"], "no module 'h3_nowhere'"),
    "two targets": (["eval", "--torch", "usermodels:build", "--model", "fcn8s-vgg16"], "not allowed with"),
}


@pytest.mark.parametrize(("argv", "expected"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_target_options_are_one_line_and_exit_2(run_cli, in_workdir, argv, expected):
    before = sorted(p.name for p in in_workdir.iterdir())
    code, out, err = run_cli([*argv, *DATA, "--json", "never.json"])
    assert code == 2 and expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in in_workdir.iterdir()) == before  # nothing written


ATTACK_NAMES = {
    "pgd": ([], "pgd-20"),
    "pgd-best-5": ([], "pgd-best-5"),
    "apgd-mce-red-3": ([], "apgd-mce-red-3"),
    "segpgd": (["--steps", "4"], "segpgd-4"),
    "cospgd-best": (["--steps", "3", "--alpha", "1"], "cospgd-best-3"),
    "mifgsm": (["--decay", "0.5", "--steps", "2"], "mifgsm-2"),
    "apgd-ce-2+pgd-2": ([], "apgd-ce-2+pgd-2"),
}


@pytest.mark.parametrize(("name", "options", "label"), [(n, *v) for n, v in ATTACK_NAMES.items()],
                         ids=ATTACK_NAMES.keys())
def test_attack_takes_every_name_attacks_from_names_accepts(name, options, label):
    from harness.cli import build_parser
    from harness.commands.attack import attack_from_args

    args = build_parser().parse_args(["attack", "--torch", "m:build", "--attack", name, *options])
    assert attack_from_args(args).label == label


@pytest.mark.parametrize(("argv", "expected"), [
    (["--attack", "pgd-20", "--steps", "5"], "names its steps (20)"),
    (["--attack", "apgd-ce+pgd", "--steps", "5"], "takes no --steps"),
    (["--attack", "pgd-bset-5"], "invalid choice: 'pgd-bset-5'"),
    (["--attack", "fgsm-best"], "invalid choice"),
    (["--attack", "pgd+" * 100 + "pgd"], "invalid choice"),
])
def test_a_wrong_attack_name_or_combination_is_one_line(run_cli, argv, expected):
    code, _, err = run_cli(["attack", "--torch", "m:build", *argv])
    assert code == 2 and expected in err and err.count("\n") == 1
