"""Data sets: built-in synthetic scenes (default), PASCAL VOC 2012, or an image+mask folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from harness.data import synthetic
from harness.data.base import IGNORE_INDEX, SegmentationData
from harness.data.folder import load_folder
from harness.data.voc import load_voc
from harness.errors import HarnessError
from harness.fileio import atomic_path, cache_dir

DATA_SOURCES = ("synthetic", "voc", "folder")
DEFAULT_SIZES = {"synthetic": synthetic.DEFAULT_SIZE, "voc": 256, "folder": 256}

__all__ = ["DATA_SOURCES", "IGNORE_INDEX", "SegmentationData", "data_key", "load_data"]


def _synthetic_cached(split: str, size: int, seed: int) -> SegmentationData:
    n = synthetic.DEFAULT_TRAIN if split == "train" else synthetic.DEFAULT_VAL
    path = cache_dir() / "data" / f"synthetic-v{synthetic.GENERATOR_VERSION}-{split}-{size}px-seed{seed}-n{n}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return SegmentationData("synthetic", split, list(synthetic.CLASS_NAMES), z["images"],
                                        z["labels"], [f"synthetic-{split}-{i:05d}" for i in range(n)],
                                        {"size": size, "seed": seed, "n": n,
                                         "generator": synthetic.GENERATOR_VERSION})
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is regenerated below
    data = synthetic.generate(split, n, size, seed)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, images=data.images, labels=data.labels)
    return data


def load_data(source: str = "synthetic", split: str = "val", root: str | None = None,
              size: int | None = None, seed: int = 0, limit: int | None = None) -> SegmentationData:
    """Load ``split`` of a data source; ``limit`` keeps the first items only.

    ``seed`` selects the synthetic scenes; ``root`` is required for voc and folder.
    """
    if source not in DATA_SOURCES:
        raise HarnessError(f"unknown data {source!r}; choose from: {', '.join(DATA_SOURCES)}")
    if split not in ("train", "val"):
        raise HarnessError(f"unknown split {split!r}; use train or val")
    size = size or DEFAULT_SIZES[source]
    if size < 32:
        raise HarnessError(f"--image-size {size} is too small: the FCN backbones need at least 32 pixels")
    if source == "synthetic":
        return _synthetic_cached(split, size, seed).subset(limit)
    if root is None:
        raise HarnessError(f"--data {source} needs --data-root DIR (nothing is downloaded)")
    if not Path(root).is_dir():
        raise HarnessError(f"--data-root {root} is not a directory")
    loader = load_voc if source == "voc" else load_folder
    return loader(root, split, size, limit)


def data_key(data: SegmentationData) -> str:
    """A short name for what a model was trained on, independent of split and item count."""
    ident = {k: v for k, v in data.describe().items() if k not in ("split", "n")}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:8]
    return f"{data.name}-{data.image_size[0]}px-{digest}"
