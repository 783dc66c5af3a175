"""Loading torchvision-format weight files written by the tests (nothing is downloaded)."""

import argparse
import datetime
import gc
import io
import pathlib
import pickle
import warnings
import zipfile

import pytest
import torch
import torchvision

from harness.errors import HarnessError
from harness.models import build_model
from harness.models.weights import load_weights


def test_full_torchvision_fcn_file_loads_and_gives_the_same_logits(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None,
                                                             num_classes=5, aux_loss=True).eval()
    path = tmp_path / "fcn_resnet50.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("fcn-resnet50", 5, "paper")
    assert load_weights(model, "fcn-resnet50", path) == "full"
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference((x - model.mean) / model.std)["out"]
        assert torch.allclose(model(x), expected, atol=1e-5)


def test_vgg16_imagenet_file_becomes_backbone_and_fc6_fc7(tmp_path):
    vgg = torchvision.models.vgg16(init_weights=False)
    path = tmp_path / "vgg16.pth"
    torch.save(vgg.state_dict(), path)
    model = build_model("fcn16s-vgg16", 4, "paper")
    assert load_weights(model, "fcn16s-vgg16", path) == "backbone"
    net = model.net
    assert torch.equal(net.backbone[28].weight, vgg.features[28].weight)
    assert torch.equal(net.fc[0].weight.flatten(1), vgg.classifier[0].weight)
    assert torch.equal(net.fc[3].weight.flatten(1), vgg.classifier[3].weight)


def test_wrong_files_are_one_line_errors(tmp_path):
    model = build_model("fcn-resnet50", 5)
    with pytest.raises(HarnessError, match="does not exist"):
        load_weights(model, "fcn-resnet50", tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(HarnessError, match="not a plain state dict of tensors"):
        load_weights(model, "fcn-resnet50", bad)
    other = tmp_path / "other.pth"
    torch.save({"something.weight": torch.zeros(2)}, other)
    with pytest.raises(HarnessError, match="matches neither"):
        load_weights(model, "fcn-resnet50", other)
    # A paper-size resnet file into the reduced model: shapes do not fit.
    resnet = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), resnet)
    with pytest.raises(HarnessError, match="wrong --size"):
        load_weights(model, "fcn-resnet50", resnet)


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _zip_of_garbage() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("archive/data.pkl", b"garbage")
    return buffer.getvalue()


BAD_FILES = {
    "zero bytes": (b"", "is empty (0 bytes)"),
    "truncated": (_torch_bytes({"a": torch.zeros(64)})[:200], "damaged or truncated"),
    "zip of garbage": (_zip_of_garbage(), "damaged or truncated"),
    "text": (b"not a checkpoint", "not in torch.save's format"),
    "protocol-4 pickle of a dict": (pickle.dumps({"a": torch.zeros(2)}, protocol=4), "not in torch.save's format"),
    "protocol-4 pickle of a list": (pickle.dumps([1, 2], protocol=4), "not in torch.save's format"),
    "pickle of an object": (_torch_bytes(pathlib.PurePosixPath("x")), "Python objects other than tensors"),
    "pickle of an object in a wrapper": (_torch_bytes({"model": {"a": torch.zeros(1)},
                                                       "when": datetime.date(2024, 1, 1)}),
                                         "Python objects other than tensors (datetime.date)"),
    "a Namespace alone": (_torch_bytes(argparse.Namespace(a=1)), "something other than a dict of names to tensors"),
    "pickle of a list": (_torch_bytes([torch.zeros(1)]), "something other than a dict of names to tensors"),
    "pickle of a number": (_torch_bytes(7), "something other than a dict"),
    "empty dict": (_torch_bytes({}), "something other than a dict"),
    "non-string keys": (_torch_bytes({1: torch.zeros(1)}), "something other than a dict"),
    "NaN tensor": (_torch_bytes({"a": torch.tensor([float("nan")])}), "NaN or infinite values in tensor 'a'"),
    "safetensors cut short": (b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":", "damaged or truncated"),
}


@pytest.mark.parametrize(("content", "expected"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_every_bad_weight_file_is_one_clean_line_without_warnings(tmp_path, content, expected):
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    gc.collect()  # an earlier test's unclosed file would warn whenever it is collected, maybe inside the block
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        with pytest.raises(HarnessError) as caught:
            load_weights(build_model("fcn-resnet50", 5), "fcn-resnet50", path)
    message = str(caught.value)
    assert expected in message and str(path) in message and "\n" not in message
    assert "\x1b" not in message and "weights_only" not in message and "arbitrary code" not in message
    assert not caught_warnings


def test_weights_cli_with_an_empty_file_is_one_line(tmp_path, run_cli):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    code, _, err = run_cli(["eval", "--model", "fcn-resnet50", "--weights", str(path), "--n-images", "2"])
    assert code == 2 and "is empty (0 bytes)" in err and err.count("\n") == 1


def test_a_vgg_file_with_odd_classifier_keys_is_refused_cleanly(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"classifier": torch.zeros(2)}, path)
    with pytest.raises(HarnessError, match="matches neither"):
        load_weights(build_model("fcn8s-vgg16", 5), "fcn8s-vgg16", path)
