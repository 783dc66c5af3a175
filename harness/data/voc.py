"""PASCAL VOC 2012 segmentation from a local folder (never downloaded).

``root`` may be the ``VOC2012`` folder itself, ``VOCdevkit`` or the folder holding
``VOCdevkit``. It must contain ``JPEGImages/``, ``SegmentationClass/`` and
``ImageSets/Segmentation/{train,val}.txt``. 21 classes; 255 (the void border) is ignored.
"""

from __future__ import annotations

from pathlib import Path

from harness.data.base import SegmentationData
from harness.data.imagefiles import read_pairs
from harness.data.listfiles import read_ids
from harness.data.sizes import size_param
from harness.errors import HarnessError

CLASS_NAMES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor"]
DEFAULT_SIZE = 256
_NEEDED = ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation")


def find_voc_root(root: str | Path) -> Path:
    root = Path(root)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if all((candidate / sub).is_dir() for sub in _NEEDED):
            return candidate
    raise HarnessError(f"{root} is not a PASCAL VOC 2012 folder: expected VOC2012/ with "
                       f"{', '.join(_NEEDED)} (pass --data-root pointing at VOCdevkit/VOC2012)")


def load_voc(root: str | Path, split: str, size: int | tuple[int, int] = DEFAULT_SIZE, limit: int | None = None
             ) -> SegmentationData:
    """The ``split`` of the VOC folder ``root`` at ``size`` (one side, or (height, width))."""
    voc = find_voc_root(root)
    list_file = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not list_file.is_file():
        raise HarnessError(f"{list_file} is missing: the VOC split {split!r} cannot be read")
    ids = read_ids(list_file)[:limit]
    if not ids:
        raise HarnessError(f"{list_file} lists no image ids")
    pairs = [(voc / "JPEGImages" / f"{i}.jpg", voc / "SegmentationClass" / f"{i}.png") for i in ids]
    missing = [str(p) for pair in pairs for p in pair if not p.is_file()]
    if missing:
        raise HarnessError(f"VOC folder incomplete: {len(missing)} files listed in {list_file.name} are "
                           f"missing, first {missing[0]}")
    images, labels = read_pairs(pairs, size, len(CLASS_NAMES))
    return SegmentationData("voc", split, list(CLASS_NAMES), images, labels, ids,
                            {"size": size_param(size), "root": str(voc.resolve())})
