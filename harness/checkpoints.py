"""Checkpoints: safetensors weights plus JSON metadata; loading never runs pickled code."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from harness import __version__
from harness.errors import HarnessError
from harness.fileio import atomic_path, cache_dir
from harness.models import build_model
from harness.models.normalize import SegmentationModel

_META_KEY = "harness"


def library_versions() -> dict[str, str]:
    import numpy
    import torchvision

    return {"harness": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__}


def default_checkpoint_path(model_name: str, size: str, data_key: str) -> Path:
    """Where ``train`` puts, and ``eval`` looks for, the checkpoint of a model on a data set."""
    return cache_dir() / "checkpoints" / f"{model_name}--{size}--{data_key}.safetensors"


def save_checkpoint(path: str | os.PathLike, model: SegmentationModel, metadata: dict[str, Any]) -> None:
    """Write weights + metadata atomically. ``metadata`` must hold model, size and class_names."""
    for key in ("model", "size", "class_names"):
        if key not in metadata:
            raise ValueError(f"checkpoint metadata needs {key!r}")
    meta = {**metadata, "versions": library_versions(),
            "created": datetime.now(UTC).isoformat(timespec="seconds")}
    tensors = {k: v.detach().contiguous() for k, v in model.net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except (SafetensorError, OSError, ValueError) as e:
        raise HarnessError(f"cannot read checkpoint {path}: {e}; retrain it or pass a valid file") from None
    if raw is None:
        raise HarnessError(f"{path} is a safetensors file without harness metadata; pass it with --weights instead")
    return json.loads(raw)


def load_checkpoint(path: str | os.PathLike) -> tuple[SegmentationModel, dict[str, Any]]:
    """The model (eval mode) and metadata stored at ``path``."""
    if not Path(path).is_file():
        raise HarnessError(f"checkpoint {path} does not exist")
    meta = read_metadata(path)
    model = build_model(meta["model"], len(meta["class_names"]), meta["size"])
    try:
        model.net.load_state_dict(load_file(str(path)))
    except (SafetensorError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise HarnessError(f"checkpoint {path} does not fit {meta['model']} ({meta['size']}): {first}") from None
    return model.eval(), meta
