"""A folder of the user's own images with PNG masks.

Layout: ``DIR/images/<id>.{png,jpg,jpeg}`` and ``DIR/masks/<id>.png`` (single-channel class
indices, 255 = ignore). Optional ``DIR/classes.txt`` (one class name a line; otherwise
classes are numbered up to the largest label found) and ``DIR/train.txt`` / ``DIR/val.txt``
(ids one a line; otherwise every fifth id in sorted order is validation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.base import IGNORE_INDEX, SegmentationData
from harness.data.imagefiles import read_pairs
from harness.errors import HarnessError

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_SIZE = 256


def _ids_for_split(root: Path, all_ids: list[str], split: str) -> list[str]:
    list_file = root / f"{split}.txt"
    if list_file.is_file():
        return [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    return [i for n, i in enumerate(all_ids) if (n % 5 == 4) == (split == "val")]


def _class_names(root: Path, mask_dir: Path) -> list[str]:
    names_file = root / "classes.txt"
    if names_file.is_file():
        names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        if len(names) < 2:
            raise HarnessError(f"{names_file} must list at least two classes, one a line")
        return names
    top = 0
    for mask in sorted(mask_dir.glob("*.png")):
        values = np.unique(np.asarray(Image.open(mask)))
        values = values[values != IGNORE_INDEX]
        top = max(top, int(values.max()) if values.size else 0)
    return [f"class{k}" for k in range(max(top + 1, 2))]


def load_folder(root: str | Path, split: str, size: int = DEFAULT_SIZE, limit: int | None = None) -> SegmentationData:
    root = Path(root)
    image_dir, mask_dir = root / "images", root / "masks"
    if not image_dir.is_dir() or not mask_dir.is_dir():
        raise HarnessError(f"{root} must contain images/ and masks/ (masks/<id>.png for each images/<id>.jpg|png)")
    by_id = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in _IMAGE_SUFFIXES}
    if not by_id:
        raise HarnessError(f"{image_dir} holds no .png/.jpg images")
    ids = _ids_for_split(root, sorted(by_id), split)[:limit]
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise HarnessError(f"{split}.txt names {len(unknown)} ids with no image in {image_dir}, first {unknown[0]!r}")
    if not ids:
        raise HarnessError(f"the {split} split of {root} is empty; add images or a {split}.txt")
    missing = [i for i in ids if not (mask_dir / f"{i}.png").is_file()]
    if missing:
        raise HarnessError(f"{len(missing)} images have no mask in {mask_dir}, first {missing[0]}.png")
    class_names = _class_names(root, mask_dir)
    images, labels = read_pairs([(by_id[i], mask_dir / f"{i}.png") for i in ids], size)
    valid = labels[labels != IGNORE_INDEX]
    if valid.size and int(valid.max()) >= len(class_names):
        raise HarnessError(f"masks in {mask_dir} hold label {int(valid.max())} but only "
                           f"{len(class_names)} classes are named in classes.txt")
    return SegmentationData("folder", split, class_names, images, labels, ids,
                            {"size": size, "root": str(root.resolve())})
