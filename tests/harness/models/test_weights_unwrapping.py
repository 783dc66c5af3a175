"""Weight files as training scripts save them: the state dict is unwrapped for ``--weights`` (built-in models and
``--torch`` modules alike), loaded strictly into a user's module, and torch's unsafe-load advice never shown."""

from __future__ import annotations

import argparse

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from harness.errors import HarnessError
from harness.models import build_model
from harness.models.weights import load_module_weights, load_weights, read_state_dict, unwrap_state_dict


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def _prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


WRAPPINGS = {
    "plain": lambda s: s,
    "torchvision references": lambda s: {"model": s, "optimizer": {"state": {}, "param_groups": []}, "epoch": 7,
                                         "args": argparse.Namespace(lr=0.02, data_path="/data")},
    "lightning-style state_dict": lambda s: {"state_dict": s, "epoch": 1},
    "model_state": lambda s: {"model_state": s, "best_miou": 0.5},
    "model_state_dict": lambda s: {"model_state_dict": s},
    "DataParallel prefix": lambda s: _prefixed(s, "module."),
    "DDP prefix inside a wrapper": lambda s: {"model": _prefixed(s, "module.")},
    "torch.compile prefix": lambda s: _prefixed(s, "_orig_mod."),
    "wrapper in a wrapper": lambda s: {"checkpoint": 1, "model": {"state_dict": s}},
}


@pytest.mark.parametrize("wrap", WRAPPINGS.values(), ids=WRAPPINGS.keys())
def test_every_usual_wrapping_is_unwrapped_and_loads_strictly(tmp_path, wrap):
    source = _net()
    path = tmp_path / "weights.pth"
    torch.save(wrap(source.state_dict()), path)
    target = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    load_module_weights(target, path, "--torch m:build")
    for (name, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_a_safetensors_file_with_a_prefix_loads_too(tmp_path):
    source = _net()
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in _prefixed(source.state_dict(), "module.").items()}, str(path))
    assert set(read_state_dict(path)) == set(source.state_dict())


def test_a_builtin_model_takes_a_wrapped_prefixed_file(tmp_path):
    model = build_model("fcn8s-vgg16", 3)
    path = tmp_path / "fcn.pth"
    torch.save({"model": _prefixed(model.net.state_dict(), "module."), "epoch": 30}, path)
    fresh = build_model("fcn8s-vgg16", 3)
    assert load_weights(fresh, "fcn8s-vgg16", path) == "full"
    assert all(torch.equal(a, b) for a, b in zip(model.net.state_dict().values(), fresh.net.state_dict().values(),
                                                  strict=True))


def test_unwrapping_keeps_what_is_no_wrapper():
    state = {"model.weight": torch.zeros(1), "module.bias": torch.zeros(1)}  # mixed prefixes: a real state dict
    assert unwrap_state_dict(state) is state
    assert unwrap_state_dict({"epoch": 3}) == {"epoch": 3}  # refused later: no tensors
    assert unwrap_state_dict([1, 2]) == [1, 2]


STRICT = {
    "missing and unexpected keys": (lambda s: {**{k: v for k, v in s.items() if not k.startswith("2.")},
                                                "head.weight": torch.zeros(1)},
                                    "2 of the module's 9 keys missing (first '2.weight'), 1 unexpected "
                                    "(first 'head.weight')"),
    "only unexpected keys": (lambda s: {**s, "aux_classifier.0.weight": torch.zeros(1)},
                             "0 of the module's 9 keys missing, 1 unexpected (first 'aux_classifier.0.weight')"),
    "another shape": (lambda s: {**s, "2.weight": torch.zeros(5, 4, 1, 1)},
                      "2.weight has shape (5, 4, 1, 1), the module needs (2, 4, 1, 1)"),
    "integers for floats": (lambda s: {**s, "0.bias": torch.zeros(4, dtype=torch.int64)}, "0.bias is torch.int64"),
}


@pytest.mark.parametrize(("edit", "expected"), STRICT.values(), ids=STRICT.keys())
def test_a_state_dict_that_does_not_fit_is_one_line(tmp_path, edit, expected):
    path = tmp_path / "w.pth"
    torch.save(edit(_net().state_dict()), path)
    with pytest.raises(HarnessError) as caught:
        load_module_weights(_net(), path, "--torch m:build")
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_pickled_objects_are_refused_without_torchs_advice(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"model": _net().state_dict(), "scheduler": torch.optim.lr_scheduler.StepLR}, path)
    with pytest.raises(HarnessError) as caught:
        load_module_weights(_net(), path, "--torch m:build")
    message = str(caught.value)
    assert "pickled Python objects other than tensors (torch.optim.lr_scheduler.StepLR)" in message
    assert "cannot be loaded safely" in message and "save a plain state dict" in message
    assert "weights_only" not in message and "\x1b" not in message and "trust" not in message


def test_an_onnx_file_given_as_weights_names_the_option(tmp_path):
    path = tmp_path / "model.ONNX"
    path.write_bytes(b"onnx")
    with pytest.raises(HarnessError, match="that is an ONNX file: use --onnx FILE"):
        load_module_weights(_net(), path, "--torch m:build")
    with pytest.raises(HarnessError, match="that is an ONNX file: use --onnx FILE"):
        load_weights(build_model("fcn8s-vgg16", 3), "fcn8s-vgg16", path)
