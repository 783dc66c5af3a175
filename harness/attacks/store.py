"""Adversarial example files: exact float32 images plus their provenance, in one .npz.

A file holds ``images`` float32 (N, 3, H, W) in [0, 1] bit-for-bit as the attack returned them,
``labels`` uint8 (N, H, W) (255 = ignore), ``ids`` (the data set's image ids) and
``provenance``: a JSON document with the attack, its parameters (ε on the 0-255 scale), the
seed, the source model and the sha256 of its checkpoint, the data set, and the sha256 of the
image array. Nothing is pickled; loading checks the format and the image hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from harness import __version__
from harness.errors import HarnessError
from harness.fileio import atomic_path
from harness.npzfile import load_arrays

FORMAT = "harness-adversarial/1"
MAX_FILE_BYTES = 1 << 40  # no practical cap: load_arrays still refuses headers larger than their data


@dataclass
class AdversarialSet:
    """Saved adversarial examples; ``provenance`` as described in the module docstring."""

    images: np.ndarray
    labels: np.ndarray
    ids: list[str]
    provenance: dict[str, Any]


def images_sha256(images: np.ndarray) -> str:
    """Hash of the exact float32 little-endian bytes of ``images`` (N, 3, H, W)."""
    return hashlib.sha256(np.ascontiguousarray(images, dtype="<f4").tobytes()).hexdigest()


def save_adversarial(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray, ids: list[str],
                     provenance: dict[str, Any]) -> AdversarialSet:
    """Write the examples atomically; ``provenance`` must be JSON-serialisable. Returns what was written, as
    :func:`load_adversarial` reads it back (its provenance with the format, the version, the date and the hash)."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.float32 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be float32 (N, 3, H, W), got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0], *images.shape[2:]) or len(ids) != len(images):
        raise ValueError(f"labels {labels.shape} and {len(ids)} ids do not fit images {images.shape}")
    doc = {"format": FORMAT, "harness_version": __version__,
           "created": datetime.now(UTC).isoformat(timespec="seconds"), **provenance,
           "n_images": len(images), "images_sha256": images_sha256(images)}
    path = Path(path)
    text = json.dumps(doc)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, images=images, labels=labels.astype(np.uint8), ids=np.array(ids, dtype=str),
                 provenance=np.array(text))
    return AdversarialSet(images, labels.astype(np.uint8), [str(i) for i in ids], json.loads(text))


def load_adversarial(path: str | os.PathLike) -> AdversarialSet:
    """The examples saved at ``path``; HarnessError when missing, corrupt or not such a file."""
    if not Path(path).is_file():
        raise HarnessError(f"adversarial examples file {path} does not exist")
    arrays = load_arrays(path, ("images", "labels", "ids", "provenance"), MAX_FILE_BYTES,
                         hint="; it is not a readable adversarial examples file")
    try:
        provenance = json.loads(str(arrays["provenance"]))
        images, labels, ids = arrays["images"], arrays["labels"], [str(i) for i in arrays["ids"]]
    except (ValueError, TypeError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise HarnessError(f"{path} is not a readable adversarial examples file ({type(e).__name__}: {e})") from None
    if not isinstance(provenance, dict) or provenance.get("format") != FORMAT:
        raise HarnessError(f"{path} is not a harness adversarial examples file of format {FORMAT}")
    if images.dtype != np.float32 or images.ndim != 4 or images.shape[1] != 3 or labels.dtype != np.uint8 \
            or labels.shape != (images.shape[0], *images.shape[2:]) or len(ids) != len(images) \
            or images_sha256(images) != provenance.get("images_sha256"):
        raise HarnessError(f"{path} is damaged: its images do not match the recorded shape or hash")
    if images.size and (not np.isfinite(images).all() or images.min() < 0 or images.max() > 1):
        raise HarnessError(f"{path} is damaged: its images are not finite values in [0, 1]")
    return AdversarialSet(images, labels, ids, provenance)
