"""Loading published weight files (for example torchvision's) into registry models and users' modules.

Accepted: a full network state dict (torchvision's ``fcn_resnet50_coco`` file; its aux
head is dropped), or an ImageNet backbone (torchvision's ``vgg16`` / ``resnet50`` /
``resnet101`` files), whose VGG fully connected layers become FCN's fc6/fc7 convolutions
as in Long et al. Files are read with ``weights_only=True`` or as safetensors.

The state dict is unwrapped from the ways training scripts save it: ``{"model": ...}`` (torchvision's
references, whose ``args`` Namespace is allowed), ``{"state_dict": ...}``, ``{"model_state": ...}``,
``{"model_state_dict": ...}``, and the ``module.`` prefix of DataParallel / DistributedDataParallel (and
``_orig_mod.`` of torch.compile). ``load_module_weights`` loads one into a user's module, strictly.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from harness.errors import HarnessError, error_line
from harness.models import get_spec
from harness.models.finite import first_non_finite
from harness.models.normalize import SegmentationModel

_SAFETENSORS_HINT = b"{"  # a safetensors file: an 8-byte header length, then a JSON header
# The keys under which training scripts save the model's state dict, in the order they are tried.
STATE_DICT_KEYS = ("model", "state_dict", "model_state", "model_state_dict")
# Prefixes that wrappers add to every key: DataParallel / DistributedDataParallel, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Objects a training checkpoint holds beside its tensors that are plain data: torchvision's references save
# their command-line arguments as an argparse.Namespace (attributes only; unpickling it runs no code).
_SAFE_GLOBALS = [argparse.Namespace]
# Files that are a target, not weights (what --weights and --checkpoint say when given one).
TARGET_FILES = {".onnx": "an ONNX file: use --onnx FILE", ".plan": "a TensorRT plan: use --plan FILE",
                ".engine": "a TensorRT plan: use --plan FILE", ".trt": "a TensorRT plan: use --plan FILE"}


def refuse_target_file(path: str | os.PathLike, option: str) -> None:
    """HarnessError when ``path``, given to ``option`` (--weights, --checkpoint), is an ONNX file or a plan."""
    what = TARGET_FILES.get(Path(path).suffix.lower())
    if what is not None:
        raise HarnessError(f"{option} {path}: that is {what}")


def _not_a_state_dict(path: Path, reason: str) -> HarnessError:
    return HarnessError(f"weight file {path} is not a plain state dict of tensors: {reason}; save "
                        "model.state_dict() with torch.save or as safetensors")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors in weight file ``path``: safetensors, or a PyTorch file read with ``weights_only=True``
    (a dict of tensors, possibly wrapped: see the module docstring). Any other content is one HarnessError:
    nothing is unpickled beyond plain data and tensors, and torch's own warnings and advice are not passed on."""
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
                with torch.serialization.safe_globals(_SAFE_GLOBALS):
                    state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found is None and "unsupported global" not in str(e).lower():
            raise _not_a_state_dict(path, "it is not in torch.save's format, or is damaged") from None
        what = f" ({found[1]})" if found else ""
        raise HarnessError(f"weight file {path} holds pickled Python objects other than tensors{what}, which cannot "
                           "be loaded safely; save a plain state dict: torch.save(model.state_dict(), FILE)") from None
    except Exception as e:  # torch and safetensors raise many types for a damaged file
        raise _not_a_state_dict(path, f"it is damaged or truncated ({type(e).__name__})") from None
    state = unwrap_state_dict(state)
    if (not isinstance(state, dict) or not state
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise _not_a_state_dict(path, "it holds something other than a dict of names to tensors")
    if any(v.layout != torch.strided or v.is_quantized for v in state.values()):
        raise HarnessError(f"{path} holds sparse or quantized tensors; save a dense float state dict")
    bad = first_non_finite(state.items())
    if bad is not None:
        raise HarnessError(f"weight file {path} holds NaN or infinite values in tensor {bad!r}")
    return state


def unwrap_state_dict(state: object) -> object:
    """The state dict inside ``state``: under one of STATE_DICT_KEYS (nested at most twice), with a prefix of
    WRAPPER_PREFIXES that every key carries removed. Anything else is returned as it is (checked by the caller)."""
    for _ in range(3):  # bounded: a wrapper inside a wrapper at most
        if not isinstance(state, dict) or all(isinstance(v, torch.Tensor) for v in state.values()):
            break
        inner = next((state[k] for k in STATE_DICT_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None:
            break
        state = inner
    for _ in range(len(WRAPPER_PREFIXES) + 1):  # e.g. a compiled model inside DataParallel
        if not isinstance(state, dict) or not state or not all(isinstance(k, str) for k in state):
            break
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_module_weights(module: nn.Module, path: str | os.PathLike, label: str) -> None:
    """Load the state dict in weight file ``path`` into ``module`` (a user's, named ``label`` in messages),
    strictly: every key of the module must be in the file and no other, with the same shapes. HarnessError
    (one line: the counts and the first missing and unexpected key) otherwise."""
    refuse_target_file(path, "--weights")
    state = read_state_dict(path)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = [f"{len(missing)} of the module's {len(expected)} keys missing" + (f" (first {missing[0]!r})"
                                                                                    if missing else ""),
                 f"{len(unexpected)} unexpected" + (f" (first {unexpected[0]!r})" if unexpected else "")]
        raise HarnessError(f"weight file {path} does not fit {label}: {', '.join(parts)}; save the state dict of "
                           "the model this callable builds (same architecture, number of classes and aux heads)")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise HarnessError(f"weight file {path} does not fit {label}: {key} has shape {tuple(value.shape)}, the "
                               f"module needs {tuple(expected[key].shape)} (another number of classes or width?)")
        if value.is_complex() or (expected[key].is_floating_point() and not value.is_floating_point()):
            raise HarnessError(f"weight file {path}: {key} is {value.dtype}; {label} needs {expected[key].dtype}")
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError) as e:
        raise HarnessError(f"weight file {path} does not fit {label}: {error_line(e)}") from None


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
    refuse_target_file(path, "--weights")
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
