"""Loading published weight files (for example torchvision's) into registry models.

Accepted: a full network state dict (torchvision's ``fcn_resnet50_coco`` file; its aux
head is dropped), or an ImageNet backbone (torchvision's ``vgg16`` / ``resnet50`` /
``resnet101`` files), whose VGG fully connected layers become FCN's fc6/fc7 convolutions
as in Long et al. Files are read with ``weights_only=True`` or as safetensors.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file

from harness.errors import HarnessError, error_line
from harness.models import get_spec
from harness.models.finite import first_non_finite
from harness.models.normalize import SegmentationModel

_SAFETENSORS_HINT = b"{"  # a safetensors file: an 8-byte header length, then a JSON header


def _not_a_state_dict(path: Path, reason: str) -> HarnessError:
    return HarnessError(f"weight file {path} is not a plain state dict of tensors: {reason}; save "
                        "model.state_dict() with torch.save or as safetensors")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors in weight file ``path``: safetensors, or a PyTorch file read with ``weights_only=True``
    (a dict of tensors, or a dict whose ``state_dict`` is one). Any other content is one HarnessError:
    nothing is unpickled beyond plain tensors, and torch's own warnings and advice are not passed on."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"weight file {path} " + ("is not a regular file" if path.exists() else "does not exist"))
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as e:
        raise HarnessError(f"cannot read weight file {path}: {e.strerror or error_line(e)}") from None
    if not head:
        raise HarnessError(f"weight file {path} is empty (0 bytes); download or copy it again")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if head[8:9] == _SAFETENSORS_HINT:
                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = ("it holds Python objects other than tensors, which are never unpickled"
                  if "unsupported global" in str(e).lower() else "it is not in torch.save's format, or is damaged")
        raise _not_a_state_dict(path, reason) from None
    except Exception as e:  # torch and safetensors raise many types for a damaged file
        raise _not_a_state_dict(path, f"it is damaged or truncated ({type(e).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if (not isinstance(state, dict) or not state
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise _not_a_state_dict(path, "it holds something other than a dict of names to tensors")
    if any(v.layout != torch.strided or v.is_quantized for v in state.values()):
        raise HarnessError(f"{path} holds sparse or quantized tensors; save a dense float state dict")
    bad = first_non_finite(state.items())
    if bad is not None:
        raise HarnessError(f"weight file {path} holds NaN or infinite values in tensor {bad!r}")
    return state


def _from_backbone(state: dict[str, torch.Tensor], family: str, net_keys: set[str]) -> dict[str, torch.Tensor]:
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if family == "vgg" and key.startswith("features."):
            mapped["backbone." + key[len("features."):]] = value
        elif family == "vgg" and key.split(".")[0] == "classifier" and key.split(".")[1:2] in (["0"], ["3"]):
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
        if value.is_complex() or (net_state[key].is_floating_point() and not value.is_floating_point()):
            raise HarnessError(f"{path}: {key} is {value.dtype}; {model_name} needs {net_state[key].dtype}")
    try:
        model.net.load_state_dict(to_load, strict=strict)
    except (RuntimeError, TypeError) as e:
        raise HarnessError(f"{path} does not fit {model_name}: {error_line(e)}") from None
    return kind
