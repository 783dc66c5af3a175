"""Loading torchvision-format weight files written by the tests (nothing is downloaded)."""

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
    with pytest.raises(HarnessError, match="cannot read"):
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
