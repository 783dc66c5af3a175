"""A folder of the user's own images with PNG masks.

Layout: ``DIR/images/<id>.{png,jpg,jpeg}`` and ``DIR/masks/<id>.png`` (single-channel class
indices, 255 = ignore; see :mod:`harness.data.imagefiles` for what a mask must be). Optional
``DIR/classes.txt`` (UTF-8, one class name a line, 2 to 255 distinct names; otherwise classes are
numbered up to the largest label found) and ``DIR/train.txt`` / ``DIR/val.txt`` (UTF-8, ids one a
line, no id in both; one list alone: the other split is every id it does not name; no list: every
fifth id in sorted order is validation).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from harness.data.base import IGNORE_INDEX, MAX_CLASSES, SegmentationData, is_class_name
from harness.data.imagefiles import mask_labels, read_pairs
from harness.data.listfiles import is_present, read_ids, read_lines
from harness.errors import HarnessError

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_SIZE = 256


def _ids_for_split(root: Path, all_ids: list[str], split: str) -> list[str]:
    """The ids of ``split``: its list file; else, when only the other split is listed, every other id; else every
    fifth id in sorted order for val. Train and val never share an image (a validation score on training images
    would be a silently wrong number)."""
    other = "val" if split == "train" else "train"
    lists = {name: read_ids(root / f"{name}.txt") if is_present(root / f"{name}.txt") else None
             for name in (split, other)}
    if lists[split] is not None and lists[other] is not None:
        shared = sorted(set(lists[split]) & set(lists[other]))
        if shared:
            raise HarnessError(f"{root / 'train.txt'} and {root / 'val.txt'} both list {len(shared)} id(s), first "
                               f"{shared[0][:60]!r}; a validation image must not be a training image")
    if lists[split] is not None:
        return lists[split]
    if lists[other] is not None:
        listed = set(lists[other])
        return [i for i in all_ids if i not in listed]
    return [i for n, i in enumerate(all_ids) if (n % 5 == 4) == (split == "val")]


def _class_names(root: Path, mask_dir: Path) -> list[str]:
    names_file = root / "classes.txt"
    if is_present(names_file):
        names = read_lines(names_file)
        if not 2 <= len(names) <= MAX_CLASSES:
            raise HarnessError(f"{names_file} lists {len(names)} classes; list 2 to {MAX_CLASSES}, one a line "
                               f"(masks are 8-bit with {IGNORE_INDEX} = ignore)")
        odd = next((n for n in names if not is_class_name(n)), None)
        if odd is not None:
            raise HarnessError(f"{names_file} holds the class name {odd!r} with control characters; "
                               "use plain text, one name a line")
        if len(set(names)) != len(names):
            twice = next(n for n, count in Counter(names).items() if count > 1)
            raise HarnessError(f"{names_file} names the class {twice!r} more than once")
        return names
    top = 0
    try:
        masks = sorted(p for p in mask_dir.glob("*.png") if p.is_file())
    except OSError as e:
        raise HarnessError(f"cannot list {mask_dir}: {e.strerror or e}") from None
    for mask in masks:
        values = mask_labels(mask)
        values = values[values != IGNORE_INDEX]
        top = max(top, int(values.max()) if values.size else 0)
    return [f"class{k}" for k in range(max(top + 1, 2))]


def _images_by_id(image_dir: Path) -> dict[str, Path]:
    by_id: dict[str, Path] = {}
    try:
        entries = sorted(image_dir.iterdir())
    except OSError as e:
        raise HarnessError(f"cannot list {image_dir}: {e.strerror or e}") from None
    for path in entries:
        if path.suffix.lower() not in _IMAGE_SUFFIXES or not path.is_file():
            continue
        if path.stem in by_id:
            raise HarnessError(f"{by_id[path.stem]} and {path} share the id {path.stem!r}; keep one image per id")
        by_id[path.stem] = path
    return by_id


def load_folder(root: str | Path, split: str, size: int = DEFAULT_SIZE, limit: int | None = None) -> SegmentationData:
    root = Path(root)
    image_dir, mask_dir = root / "images", root / "masks"
    if not image_dir.is_dir() or not mask_dir.is_dir():
        raise HarnessError(f"{root} must contain images/ and masks/ (masks/<id>.png for each images/<id>.jpg|png)")
    by_id = _images_by_id(image_dir)
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
    images, labels = read_pairs([(by_id[i], mask_dir / f"{i}.png") for i in ids], size, len(class_names))
    return SegmentationData("folder", split, class_names, images, labels, ids,
                            {"size": size, "root": str(root.resolve())})
