"""Data sets: built-in synthetic scenes (default), PASCAL VOC 2012, or an image+mask folder."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from harness.data import synthetic
from harness.data.base import IGNORE_INDEX, SegmentationData
from harness.data.folder import load_folder
from harness.data.masks import MASK_FORMATS, check_mask_format
from harness.data.sizes import ImageSize, height_width, size_text
from harness.data.voc import load_voc
from harness.errors import HarnessError
from harness.fileio import atomic_path, cache_dir
from harness.npzfile import load_arrays

DATA_SOURCES = ("synthetic", "voc", "folder")
DEFAULT_SIZES = {"synthetic": synthetic.DEFAULT_SIZE, "voc": 256, "folder": 256}

__all__ = ["DATA_SOURCES", "IGNORE_INDEX", "MASK_FORMATS", "ImageSize", "SegmentationData", "data_key", "load_data"]


def arrays_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 over the shapes, dtypes and bytes of a data set's images and labels."""
    digest = hashlib.sha256()
    for array in (images, labels):
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _read_synthetic_cache(path: Path, split: str, size: int, seed: int, n: int) -> SegmentationData | None:
    """The cached scenes at ``path`` when the file is intact: the expected arrays, and the sha256 stored beside
    them matches their content. None when the file is missing; a note on stderr, then None, when it is damaged."""
    if not path.is_file():
        return None
    expected_bytes = n * size * size * 4 + 1024  # images (3 bytes a pixel), labels (1), the digest
    try:
        arrays = load_arrays(path, ("images", "labels", "sha256"), expected_bytes, what="the cached data file ")
    except HarnessError as e:
        problem = str(e)
    else:
        images, labels, stored = arrays["images"], arrays["labels"], arrays["sha256"]
        if images.shape != (n, size, size, 3) or images.dtype != np.uint8 or labels.shape != (n, size, size) \
                or labels.dtype != np.uint8 or stored.shape != () or stored.dtype.kind != "U":
            problem = f"the cached data file {path} holds arrays of the wrong shape or type"
        elif str(stored) != arrays_digest(images, labels):
            problem = f"the cached data file {path} holds content that does not match its sha256"
        else:
            return SegmentationData("synthetic", split, list(synthetic.CLASS_NAMES), images, labels,
                                    [f"synthetic-{split}-{i:05d}" for i in range(n)],
                                    {"size": size, "seed": seed, "n": n, "generator": synthetic.GENERATOR_VERSION})
    print(f"note: {problem}; regenerating it", file=sys.stderr)
    return None


def _synthetic_cached(split: str, size: int, seed: int) -> SegmentationData:
    """The synthetic scenes, from the cache when an intact copy is there; generated (deterministically) and
    cached otherwise. Writing the cache is best effort: the data is returned even when it cannot be written."""
    n = synthetic.DEFAULT_TRAIN if split == "train" else synthetic.DEFAULT_VAL
    path = cache_dir() / "data" / f"synthetic-v{synthetic.GENERATOR_VERSION}-{split}-{size}px-seed{seed}-n{n}.npz"
    cached = _read_synthetic_cache(path, split, size, seed, n)
    if cached is not None:
        return cached
    data = synthetic.generate(split, n, size, seed)
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, images=data.images, labels=data.labels,
                         sha256=np.array(arrays_digest(data.images, data.labels)))
    except (OSError, HarnessError) as e:  # atomic_path reports a failed write as a HarnessError
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        print(f"note: cannot cache the synthetic data ({reason}); it will be generated again next time",
              file=sys.stderr)
    return data


def load_data(source: str = "synthetic", split: str = "val", root: str | None = None,
              size: int | tuple[int, int] | None = None, seed: int = 0, limit: int | None = None,
              mask_format: str = "index") -> SegmentationData:
    """Load ``split`` of a data source; ``limit`` keeps the first items only.

    ``size`` is one side (square) or (height, width), voc and folder only; ``seed`` selects the synthetic
    scenes; ``root`` is required for voc and folder; ``mask_format`` (index or binary) is how a folder's masks
    encode their classes (:mod:`harness.data.masks`).
    """
    if source not in DATA_SOURCES:
        raise HarnessError(f"unknown data {source!r}; choose from: {', '.join(DATA_SOURCES)}")
    if split not in ("train", "val"):
        raise HarnessError(f"unknown split {split!r}; use train or val")
    check_mask_format(mask_format)
    if mask_format != "index" and source != "folder":
        raise HarnessError(f"--mask-format {mask_format} is read by --data folder only; --data {source} has index "
                           "masks (255 = ignore)")
    size = size or DEFAULT_SIZES[source]
    height, width = height_width(size)
    if min(height, width) < 32:
        raise HarnessError(f"--image-size {size_text(size)} is too small: the FCN backbones need at least 32 pixels")
    if source == "synthetic":
        if height != width:
            raise HarnessError(f"--image-size {size_text(size)}: the synthetic scenes are square; give one side "
                               "(e.g. --image-size 64), or use --data voc or --data folder for non-square images")
        return _synthetic_cached(split, height, seed).subset(limit)
    if root is None:
        raise HarnessError(f"--data {source} needs --data-root DIR (nothing is downloaded)")
    if not Path(root).is_dir():
        raise HarnessError(f"--data-root {root} is not a directory")
    if source == "voc":
        data = load_voc(root, split, size, limit)
    else:
        data = load_folder(root, split, size, limit, mask_format)
    if not bool((data.labels != IGNORE_INDEX).any()):
        raise HarnessError(f"the {split} split of {root} ({len(data)} images) has no labelled pixel: every mask "
                           f"pixel is {IGNORE_INDEX} (ignore) after resizing to {size_text(size)} px, so nothing can "
                           "be scored")
    return data


def data_key(data: SegmentationData) -> str:
    """A short name for what a model was trained on, independent of split and item count."""
    ident = {k: v for k, v in data.describe().items() if k not in ("split", "n")}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:8]
    return f"{data.name}-{size_text(data.image_size)}px-{digest}"
