import pytest
import torch
import torchvision

from harness.errors import HarnessError
from harness.models import MODELS, build_model
from harness.models.fcn_resnet import fcn_resnet
from harness.models.fcn_vgg import vgg16_features


@pytest.mark.parametrize("name", list(MODELS))
def test_reduced_models_map_unit_pixels_to_logits_at_input_resolution(name):
    model = build_model(name, 7)
    assert not model.training
    for shape in ((2, 3, 64, 64), (1, 3, 96, 80)):
        with torch.no_grad():
            out = model(torch.rand(shape))
        assert out.shape == (shape[0], 7, *shape[2:]) and out.dtype == torch.float32


def test_normalisation_is_inside_the_model():
    model = build_model("fcn-resnet50", 3)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        direct = model.net((x - model.mean) / model.std)["out"]
        assert torch.equal(model(x), direct)


def test_paper_size_layouts_match_torchvision():
    ours = fcn_resnet(101, 21).state_dict()
    theirs = torchvision.models.segmentation.fcn_resnet101(weights=None, weights_backbone=None,
                                                           num_classes=21, aux_loss=False).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    ours = vgg16_features(64).state_dict()
    theirs = torchvision.models.vgg16().features.state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_unknown_names_are_usage_errors():
    with pytest.raises(HarnessError, match="unknown model"):
        build_model("unet", 7)
    with pytest.raises(HarnessError, match="unknown size"):
        build_model("fcn8s-vgg16", 7, "huge")
