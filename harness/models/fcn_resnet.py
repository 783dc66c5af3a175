"""FCN on a dilated ResNet-50/101 of any width (torchvision's FCN head and layout).

At width 64 the module tree, parameter names and shapes are those of torchvision's
``fcn_resnet50`` / ``fcn_resnet101`` (without the aux head), so torchvision's published
weight files load into it; narrower widths are the same network with fewer channels.
"""

from __future__ import annotations

from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import Bottleneck
from torchvision.models.segmentation.fcn import FCN, FCNHead

_BLOCKS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}


class DilatedResNet(nn.Module):
    """ResNet with Bottleneck blocks; layer3 and layer4 dilated (output stride 8), as torchvision's FCN."""

    def __init__(self, depth: int, width: int = 64) -> None:
        super().__init__()
        self.inplanes = width
        self.dilation = 1
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        blocks = _BLOCKS[depth]
        self.layer1 = self._make_layer(width, blocks[0])
        self.layer2 = self._make_layer(2 * width, blocks[1], stride=2)
        self.layer3 = self._make_layer(4 * width, blocks[2], stride=2, dilate=True)
        self.layer4 = self._make_layer(8 * width, blocks[3], stride=2, dilate=True)
        self.out_channels = 8 * width * Bottleneck.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Zero-init the last BN of each block: every residual branch starts as identity.
        for m in self.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, dilation=previous_dilation)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)


def fcn_resnet(depth: int, num_classes: int, width: int = 64) -> FCN:
    """torchvision's FCN (backbone + FCNHead) on a dilated ResNet-``depth`` of base ``width``."""
    resnet = DilatedResNet(depth, width)
    backbone = IntermediateLayerGetter(resnet, return_layers={"layer4": "out"})
    return FCN(backbone, FCNHead(resnet.out_channels, num_classes), aux_classifier=None)
