"""A user's model as a user has it: a small U-Net in a module file with ``build()``, its trained weights
(a plain state dict), its ``torch.onnx.export``-ed ONNX file and the model card that describes both.

Like torchvision's models, the U-Net takes ImageNet-normalised images (the normalisation is the user's
preprocessing, outside the module and the graph) under the input name ``input`` and returns logits ``out``.
It is trained briefly (one thread, seeded) on the built-in synthetic data, so its predictions are confident
enough for the deployment parity thresholds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MODULE_NAME = "user_unet"
MODULE_SOURCE = '''
"""A small U-Net: ImageNet-normalised RGB (N, 3, H, W) in, logits (N, K, H, W) out (H, W multiples of 8)."""
import torch
from torch import nn
from torch.nn import functional as F


def _block(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _up(x, like):
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class UNet(nn.Module):
    def __init__(self, num_classes=7, width=16):
        super().__init__()
        w = width
        self.down = nn.ModuleList([_block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 4 * w)])
        self.up = nn.ModuleList([_block(8 * w, 2 * w), _block(4 * w, w), _block(2 * w, w)])
        self.head = nn.Conv2d(w, num_classes, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([skip, _up(x, skip)], 1))
        return self.head(x)


def build():
    return UNet()
'''

CARD = '''schema = 1
name = "unet"
num_classes = 7

[input]
name = "input"
mean = "imagenet"
std = "imagenet"

[output]
name = "out"
'''

IMAGENET_MEAN = np.array((0.485, 0.456, 0.406), np.float32).reshape(1, 3, 1, 1)
IMAGENET_STD = np.array((0.229, 0.224, 0.225), np.float32).reshape(1, 3, 1, 1)
# About 86 % pixel accuracy on the synthetic validation images (the prior, all background, is 69 %); about 30 s
# on one core, once: the weights are kept in the session cache, keyed by the module source and these settings.
TRAIN_STEPS = 250
BATCH = 16
LR = 5e-3


@dataclass(frozen=True)
class UserModel:
    """The files of the user's model: ``folder`` holds ``user_unet.py`` (entry ``user_unet:build``)."""

    folder: Path
    module_file: Path
    weights: Path
    onnx: Path
    card: Path

    @property
    def entry(self) -> str:
        return f"{MODULE_NAME}:build"


def load_module(module_file: Path) -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location(f"{MODULE_NAME}_for_tests", module_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build()


def normalise(images: torch.Tensor) -> torch.Tensor:
    """The user's preprocessing: [0, 1] RGB -> ImageNet-normalised."""
    return (images - torch.from_numpy(IMAGENET_MEAN)) / torch.from_numpy(IMAGENET_STD)


def make_user_model(folder: Path, train_data, cache: Path, seed: int = 0) -> UserModel:
    """Write the module file, train the U-Net briefly on ``train_data`` (one thread; or take the weights kept
    under ``cache`` by an earlier run), save its state dict, export it with ``torch.onnx.export`` (dynamic
    batch, height, width) and write its card."""
    folder.mkdir(parents=True, exist_ok=True)
    module_file = folder / f"{MODULE_NAME}.py"
    module_file.write_text(MODULE_SOURCE)
    key = hashlib.sha256(f"{MODULE_SOURCE}{TRAIN_STEPS}{BATCH}{LR}{seed}{train_data.describe()}".encode())
    kept = cache / "test-user-unet" / f"{key.hexdigest()[:16]}.pt"
    torch.manual_seed(seed)
    net = load_module(module_file)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if kept.is_file():
            net.load_state_dict(torch.load(kept, weights_only=True))
        else:
            _train(net, train_data, seed)
            kept.parent.mkdir(parents=True, exist_ok=True)
            torch.save(net.state_dict(), kept)
        net.eval()
        weights = folder / "unet.pt"
        torch.save(net.state_dict(), weights)
        onnx_path = folder / "unet.onnx"
        dynamic = {"input": {0: "N", 2: "H", 3: "W"}, "out": {0: "N", 2: "H", 3: "W"}}
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(net, (torch.rand(1, 3, 64, 64),), str(onnx_path), input_names=["input"],
                              output_names=["out"], dynamic_axes=dynamic, opset_version=17, dynamo=False)
    finally:
        torch.set_num_threads(threads)
    card = folder / "unet.toml"
    card.write_text(CARD)
    return UserModel(folder, module_file, weights, onnx_path, card)


def _train(net: torch.nn.Module, train_data, seed: int) -> None:
    optimiser = torch.optim.AdamW(net.parameters(), lr=LR)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=LR, total_steps=TRAIN_STEPS, pct_start=0.15)
    generator = np.random.default_rng(seed)
    net.train()
    for _ in range(TRAIN_STEPS):
        images, labels = train_data.tensors(generator.choice(len(train_data), BATCH, replace=False))
        loss = torch.nn.functional.cross_entropy(net(normalise(images)), labels, ignore_index=255)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
