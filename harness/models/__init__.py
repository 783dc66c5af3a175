"""Model registry: the paper's four FCNs, each at the paper's size and at a reduced CPU width.

Every built model is a :class:`SegmentationModel`: float32 (N, 3, H, W) in [0, 1] in,
logits (N, K, H, W) out, normalisation inside.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from harness.errors import HarnessError
from harness.models.fcn_resnet import fcn_resnet
from harness.models.fcn_vgg import FCNVGG
from harness.models.normalize import SegmentationModel

SIZES = ("reduced", "paper")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    family: str  # "vgg" or "resnet": which published backbone weights fit
    build_net: Callable[[int, str], nn.Module]  # (num_classes, size) -> network on normalised input


def _vgg(stride: int) -> Callable[[int, str], nn.Module]:
    def build(num_classes: int, size: str) -> nn.Module:
        if size == "paper":
            return FCNVGG(num_classes, width=64, fc_width=4096, stride=stride)
        return FCNVGG(num_classes, width=16, fc_width=256, stride=stride, batch_norm=True)
    return build


def _resnet(depth: int) -> Callable[[int, str], nn.Module]:
    def build(num_classes: int, size: str) -> nn.Module:
        return fcn_resnet(depth, num_classes, width=64 if size == "paper" else 8)
    return build


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("fcn8s-vgg16", "FCN-8s on VGG16 (pool3 + pool4 skips)", "vgg", _vgg(8)),
        ModelSpec("fcn16s-vgg16", "FCN-16s on VGG16 (pool4 skip)", "vgg", _vgg(16)),
        ModelSpec("fcn-resnet50", "FCN on dilated ResNet-50 (torchvision layout)", "resnet", _resnet(50)),
        ModelSpec("fcn-resnet101", "FCN on dilated ResNet-101 (torchvision layout)", "resnet", _resnet(101)),
    )
}


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise HarnessError(f"unknown model {name!r}; choose from: {', '.join(MODELS)}")
    return MODELS[name]


def check_size(size: str) -> str:
    if size not in SIZES:
        raise HarnessError(f"unknown size {size!r}; choose from: {', '.join(SIZES)}")
    return size


def build_model(name: str, num_classes: int, size: str = "reduced") -> SegmentationModel:
    """A freshly initialised model (eval mode) of registry ``name`` at ``size``."""
    spec = get_spec(name)
    model = SegmentationModel(spec.build_net(num_classes, check_size(size)), num_classes)
    return model.eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
