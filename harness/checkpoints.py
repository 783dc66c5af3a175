"""Checkpoints: safetensors weights plus JSON metadata; loading never runs pickled code.

The metadata schema is checked in one place, :func:`validate_metadata`: every field that the harness
reads has a fixed type, so a damaged or hand-edited file is one clear error naming the file.
"""

from __future__ import annotations

import json
import math
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from harness import __version__
from harness.data.base import MAX_CLASSES, is_class_name
from harness.errors import HarnessError, error_line
from harness.fileio import atomic_path, cache_dir, unique_keys
from harness.models import MODELS, SIZES, build_model
from harness.models.finite import first_non_finite
from harness.models.normalize import SegmentationModel
from harness.models.weights import TARGET_FILES

_META_KEY = "harness"


def library_versions() -> dict[str, str]:
    import numpy
    import torchvision

    return {"harness": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__}


def default_checkpoint_path(model_name: str, size: str, data_key: str, variant: str = "") -> Path:
    """Where ``train`` puts, and ``eval`` looks for, the checkpoint of a model on a data set; a ``variant``
    (``adv-pgd3-eps8``: adversarially trained) has its own file, never the default one."""
    tail = f"--{variant}" if variant else ""
    return cache_dir() / "checkpoints" / f"{model_name}--{size}--{data_key}{tail}.safetensors"


def is_integer(value: Any) -> bool:
    """An int that is not a bool (JSON's true is no count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fraction(value: Any) -> bool:
    return is_finite_number(value) and 0.0 <= value <= 1.0


def _count(value: Any) -> bool:
    return is_integer(value) and value >= 0


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:30] + "..."


def metadata_problem(meta: Any) -> str | None:
    """What is wrong with checkpoint metadata ``meta`` (already parsed JSON), or None when it is valid.

    Required: ``model`` (a registry name), ``size`` (reduced|paper), ``class_names`` (2 to 255 distinct
    non-empty strings without control characters). Optional, but typed when present: ``data`` and ``train``
    (objects), ``data_key`` and ``created`` (strings), ``input_size`` ([height, width], positive integers),
    ``versions`` (strings), ``train.adversarial`` (null or PGD adversarial training's attack, steps, eps and
    alpha), ``val_metrics`` (fractions in [0, 1], ``per_class_iou`` one per class or null,
    ``n_images`` a count).
    """
    if not isinstance(meta, dict):
        return f"the metadata is a JSON {type(meta).__name__}, not an object"
    for key, allowed in (("model", MODELS), ("size", SIZES)):
        if not isinstance(meta.get(key), str) or meta[key] not in allowed:
            return f"'{key}' is {_shown(meta.get(key))}; expected one of {', '.join(allowed)}"
    names = meta.get("class_names")
    if (not isinstance(names, list) or not 2 <= len(names) <= MAX_CLASSES
            or not all(is_class_name(n) for n in names) or len(set(names)) != len(names)):
        return f"'class_names' must be a list of 2 to {MAX_CLASSES} distinct names (text without control characters)"
    for key in ("data", "train"):
        if key in meta and not isinstance(meta[key], dict):
            return f"'{key}' must be an object"
    for key in ("data_key", "created"):
        if key in meta and not isinstance(meta[key], str):
            return f"'{key}' must be a string"
    adversarial = meta.get("train", {}).get("adversarial")
    if adversarial is not None and not (
            isinstance(adversarial, dict) and adversarial.get("attack") == "pgd" and _count(adversarial.get("steps"))
            and adversarial["steps"] > 0 and all(is_finite_number(adversarial.get(k)) and 0 < adversarial[k] <= 255
                                                 for k in ("eps", "alpha"))):
        return "'train.adversarial' must be null or {attack: pgd, steps >= 1, eps and alpha in (0, 255]}"
    size = meta.get("input_size", [1, 1])
    if not (isinstance(size, list) and len(size) == 2 and all(_count(v) and v > 0 for v in size)):
        return "'input_size' must be [height, width] in pixels"
    versions = meta.get("versions", {})
    if not (isinstance(versions, dict) and all(isinstance(v, str) for v in versions.values())):
        return "'versions' must map names to version strings"
    return _val_metrics_problem(meta.get("val_metrics", {}), len(names))


def _val_metrics_problem(metrics: Any, num_classes: int) -> str | None:
    if not isinstance(metrics, dict):
        return "'val_metrics' must be an object"
    for key in ("pixel_accuracy", "mean_iou"):
        if key in metrics and not _fraction(metrics[key]):
            return f"'val_metrics.{key}' must be a number in [0, 1]"
    per_class = metrics.get("per_class_iou", [None] * num_classes)
    if not (isinstance(per_class, list) and len(per_class) == num_classes
            and all(v is None or _fraction(v) for v in per_class)):
        return "'val_metrics.per_class_iou' must hold one number in [0, 1] (or null) per class"
    if "n_images" in metrics and not _count(metrics["n_images"]):
        return "'val_metrics.n_images' must be a count"
    return None


def validate_metadata(meta: Any, path: str | os.PathLike) -> dict[str, Any]:
    """``meta`` when it satisfies :func:`metadata_problem`'s schema; else a HarnessError naming ``path``."""
    problem = metadata_problem(meta)
    if problem is not None:
        raise HarnessError(f"checkpoint {path} has invalid metadata: {problem}; retrain it (train --force) "
                           "or pass a checkpoint written by harness train")
    return meta


def save_checkpoint(path: str | os.PathLike, model: SegmentationModel, metadata: dict[str, Any]) -> None:
    """Write weights + metadata atomically. ``metadata`` must satisfy the schema (model, size, class_names, ...);
    a model holding NaN or infinite parameters or buffers is refused and nothing is written."""
    meta = {**metadata, "versions": library_versions(),
            "created": datetime.now(UTC).isoformat(timespec="seconds")}
    problem = metadata_problem(meta)
    if problem is not None:
        raise ValueError(f"checkpoint metadata: {problem}")
    tensors = {k: v.detach().contiguous() for k, v in model.net.state_dict().items()}
    bad = first_non_finite(tensors.items())
    if bad is not None:
        raise HarnessError(f"not saving {path}: the model's {bad} holds NaN or infinite values "
                           "(training diverged; lower --lr)")
    text = json.dumps(meta, allow_nan=False)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: text})


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The validated metadata of the checkpoint at ``path`` (the weights are not read)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise HarnessError(f"cannot read checkpoint {path}: {error_line(e)}; retrain it or pass a valid file"
                           ) from None
    if raw is None:
        raise HarnessError(f"{path} is a safetensors file without harness metadata; pass it with --weights instead")
    try:
        meta = json.loads(raw, parse_constant=_refuse_constant, object_pairs_hook=unique_keys)
    except (ValueError, RecursionError) as e:
        raise HarnessError(f"checkpoint {path} has invalid metadata: not JSON ({error_line(e)}); retrain it "
                           "(train --force) or pass a checkpoint written by harness train") from None
    return validate_metadata(meta, path)


def load_checkpoint(path: str | os.PathLike) -> tuple[SegmentationModel, dict[str, Any]]:
    """The model (eval mode) and metadata stored at ``path``; every tensor must fit the model and be finite."""
    what_file = TARGET_FILES.get(Path(path).suffix.lower())
    if what_file is not None:
        raise HarnessError(f"checkpoint {path}: that is {what_file}")
    if not Path(path).is_file():
        problem = "is not a regular file" if Path(path).exists() else "does not exist"
        raise HarnessError(f"checkpoint {path} {problem}")
    meta = read_metadata(path)
    model = build_model(meta["model"], len(meta["class_names"]), meta["size"])
    what = f"checkpoint {path} does not fit {meta['model']} ({meta['size']}, {len(meta['class_names'])} classes)"
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise HarnessError(f"cannot read checkpoint {path}: {error_line(e)}; retrain it or pass a valid file"
                           ) from None
    expected = model.net.state_dict()
    if set(state) != set(expected):
        odd = sorted(set(state) ^ set(expected))[0]
        raise HarnessError(f"{what}: tensor {odd!r} is missing or unexpected")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise HarnessError(f"{what}: {key} has shape {tuple(value.shape)}, needs {tuple(expected[key].shape)}")
    bad = first_non_finite(state.items())
    if bad is not None:
        raise HarnessError(f"checkpoint {path} holds NaN or infinite values in {bad}; retrain it (train --force)")
    try:
        model.net.load_state_dict(state)
    except (RuntimeError, TypeError) as e:
        raise HarnessError(f"{what}: {error_line(e)}") from None
    return model.eval(), meta


def identity_problem(meta: dict[str, Any], model_name: str, size: str, class_names: list[str]) -> str | None:
    """How checkpoint metadata ``meta`` contradicts the model, size and classes asked for, or None."""
    if meta["model"] != model_name:
        return f"holds {meta['model']}, not {model_name}; pass --model {meta['model']}"
    if meta["size"] != size:
        return f"holds {model_name} at size {meta['size']}, not {size}; pass --size {meta['size']}"
    if meta["class_names"] != class_names:
        shown = ", ".join(meta["class_names"][:8]) + (", ..." if len(meta["class_names"]) > 8 else "")
        return (f"was trained on {len(meta['class_names'])} classes ({shown}), which are not this data's "
                f"{len(class_names)} classes")
    return None


def load_cached_checkpoint(path: str | os.PathLike, model_name: str, size: str, class_names: list[str]
                           ) -> tuple[tuple[SegmentationModel, dict[str, Any]] | None, str | None]:
    """``(load_checkpoint(path), None)`` when the checkpoint at ``path`` can stand in for training
    ``model_name`` at ``size`` on data with ``class_names``; else ``(None, why)``: unreadable, truncated,
    non-finite, or another model."""
    try:
        model, meta = load_checkpoint(path)
    except HarnessError as e:
        return None, str(e)
    problem = identity_problem(meta, model_name, size, class_names)
    return ((model, meta), None) if problem is None else (None, f"checkpoint {path} {problem}")


def cached_checkpoint_problem(path: str | os.PathLike, model_name: str, size: str,
                              class_names: list[str]) -> str | None:
    """Why the checkpoint at ``path`` cannot stand in for the training (:func:`load_cached_checkpoint`), or None."""
    return load_cached_checkpoint(path, model_name, size, class_names)[1]
