"""Loading published weight files (for example torchvision's) into registry models.

Accepted: a full network state dict (torchvision's ``fcn_resnet50_coco`` file; its aux
head is dropped), or an ImageNet backbone (torchvision's ``vgg16`` / ``resnet50`` /
``resnet101`` files), whose VGG fully connected layers become FCN's fc6/fc7 convolutions
as in Long et al. Files are read with ``weights_only=True`` or as safetensors.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from harness.errors import HarnessError
from harness.models import get_spec
from harness.models.normalize import SegmentationModel


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"weight file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise HarnessError(f"cannot read weight file {path}: {str(e).splitlines()[0]}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HarnessError(f"{path} does not hold a state dict of tensors")
    return state


def _from_backbone(state: dict[str, torch.Tensor], family: str, net_keys: set[str]) -> dict[str, torch.Tensor]:
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if family == "vgg" and key.startswith("features."):
            mapped["backbone." + key[len("features."):]] = value
        elif family == "vgg" and key.split(".")[0] == "classifier" and key.split(".")[1] in ("0", "3"):
            # VGG's fc6 (4096 x 512*7*7) and fc7 (4096 x 4096) as convolutions.
            target = "fc." + key[len("classifier."):]
            if value.ndim == 2 and target.endswith("weight"):
                kernel = 7 if key.split(".")[1] == "0" else 1
                value = value.reshape(value.shape[0], -1, kernel, kernel)
            mapped[target] = value
        elif family == "resnet" and not key.startswith("fc.") and "backbone." + key in net_keys:
            mapped["backbone." + key] = value
    return mapped


def load_weights(model: SegmentationModel, model_name: str, path: str | os.PathLike) -> str:
    """Load ``path`` into ``model.net``; returns "full" or "backbone" (what was loaded)."""
    state = read_state_dict(path)
    net_state = model.net.state_dict()
    full = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    if set(full) == set(net_state):
        kind, to_load, strict = "full", full, True
    else:
        kind = "backbone"
        to_load = _from_backbone(state, get_spec(model_name).family, set(net_state))
        strict = False
        if not to_load:
            raise HarnessError(f"{path} matches neither {model_name} nor its {get_spec(model_name).family} backbone")
    for key, value in to_load.items():
        if net_state[key].shape != value.shape:
            raise HarnessError(f"{path}: {key} has shape {tuple(value.shape)}, {model_name} needs "
                               f"{tuple(net_state[key].shape)} (wrong --size or number of classes?)")
    model.net.load_state_dict(to_load, strict=strict)
    return kind
