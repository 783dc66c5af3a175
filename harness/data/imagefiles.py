"""Reading image + mask files into fixed-size arrays (shared by VOC and image folders).

Resize policy: scale so the shorter side equals ``size`` (bilinear for images, nearest for
masks, so no new label values appear), then take the centred ``size`` x ``size`` crop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from harness.errors import HarnessError


def _resize_crop(img: Image.Image, size: int, resample: Image.Resampling) -> np.ndarray:
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), resample)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)))


def read_pair(image_path: Path, mask_path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (size, size, 3), mask uint8 (size, size)); masks are palette or greyscale PNGs."""
    try:
        with Image.open(image_path) as img:
            image = _resize_crop(img.convert("RGB"), size, Image.Resampling.BILINEAR)
        with Image.open(mask_path) as mask:
            if mask.mode not in ("P", "L"):
                raise HarnessError(f"mask {mask_path} is {mask.mode}; masks must be single-channel "
                                   "(palette or greyscale) PNGs of class indices, 255 = ignore")
            label = _resize_crop(mask, size, Image.Resampling.NEAREST)
    except (UnidentifiedImageError, OSError) as e:
        raise HarnessError(f"cannot read {e.filename or image_path}: {e}") from None
    return image, label.astype(np.uint8)


def read_pairs(pairs: list[tuple[Path, Path]], size: int) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((len(pairs), size, size, 3), dtype=np.uint8)
    labels = np.empty((len(pairs), size, size), dtype=np.uint8)
    for i, (image_path, mask_path) in enumerate(pairs):
        images[i], labels[i] = read_pair(image_path, mask_path, size)
    return images, labels
