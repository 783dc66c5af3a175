"""A folder of the user's own images with PNG masks.

Layout: ``DIR/images/<id>.{png,jpg,jpeg}`` and ``DIR/masks/<id>.png``. Masks are read under a mask format
(:mod:`harness.data.masks`): ``index`` (the default: class numbers, 255 = ignore), ``binary`` (0 = background,
any other value = foreground) or ``rgb`` (colour masks, exact colours mapped to classes by ``DIR/colors.txt``).
With ``index``, a folder whose masks hold only 0 and 255 is refused: it is almost surely a 0/255 binary data
set, of which only the background would be scored. Optional ``DIR/classes.txt`` (UTF-8, one class name a line,
2 to 255 distinct names; exactly 2 with ``binary``, one per colour with ``rgb``; otherwise classes are numbered
up to the largest label found, or background/foreground with ``binary``) and ``DIR/train.txt`` /
``DIR/val.txt`` (UTF-8, ids one a line, no id in both; one list alone: the other split is every id it does not
name; no list: every fifth id in sorted order is validation).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from harness.data.base import IGNORE_INDEX, MAX_CLASSES, SegmentationData, is_class_name
from harness.data.colours import COLOURS_FILE, ColourTable, read_colours
from harness.data.imagefiles import mask_labels, read_pairs
from harness.data.listfiles import is_present, read_ids, read_lines
from harness.data.masks import BINARY_CLASSES, check_mask_format
from harness.data.sizes import size_param
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


def _class_names(root: Path, mask_dir: Path, mask_format: str, colours: ColourTable | None) -> list[str]:
    names_file = root / "classes.txt"
    if is_present(names_file):
        names = read_lines(names_file)
        if mask_format == "binary" and len(names) != 2:
            raise HarnessError(f"{names_file} lists {len(names)} classes, but --mask-format binary has 2 "
                               "(0 = background, any other value = foreground); list 2 names or remove the file")
        if colours is not None and len(names) != colours.num_classes:
            raise HarnessError(f"{names_file} lists {len(names)} classes but {colours.path} {colours.num_classes} "
                               "class colours; list one name for each colour, in the same order")
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
    if mask_format == "binary":
        return list(BINARY_CLASSES)
    if colours is not None:
        return [f"class{k}" for k in range(colours.num_classes)]
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


def _colour_table(root: Path) -> ColourTable:
    path = root / COLOURS_FILE
    if not is_present(path):
        raise HarnessError(f"--mask-format rgb reads the class colours from {path}, which is missing; list one "
                           "colour a line (R G B, first line class 0)")
    return read_colours(path)


def _only_zero_and_ignore(labels: np.ndarray, masks: list[Path]) -> bool:
    """Whether the index masks hold only the values 0 and 255 (both present, no label 1..254 anywhere): first
    on the split's ``labels``; only when those hold no label 1..254, on every mask of the folder (``masks``),
    stopping at the first that holds one."""
    counts = np.bincount(labels.ravel(), minlength=IGNORE_INDEX + 1)
    if counts[1:IGNORE_INDEX].any():
        return False
    seen = {value for value in (0, IGNORE_INDEX) if counts[value]}
    for mask in masks:  # a resize can drop a small region, so the files themselves decide
        values = mask_labels(mask)
        if ((values > 0) & (values < IGNORE_INDEX)).any():
            return False
        seen.update(int(v) for v in values)
    return seen == {0, IGNORE_INDEX}


def load_folder(root: str | Path, split: str, size: int | tuple[int, int] = DEFAULT_SIZE, limit: int | None = None,
                mask_format: str = "index") -> SegmentationData:
    """The ``split`` of the image+mask folder ``root`` at ``size`` (one side, or (height, width)), its masks
    read under ``mask_format`` (index, binary, or rgb with ``DIR/colors.txt``)."""
    check_mask_format(mask_format)
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
    colours = _colour_table(root) if mask_format == "rgb" else None
    class_names = _class_names(root, mask_dir, mask_format, colours)
    images, labels = read_pairs([(by_id[i], mask_dir / f"{i}.png") for i in ids], size, len(class_names),
                                mask_format, colours)
    if mask_format == "index":
        masks = [mask_dir / f"{i}.png" for i in sorted(by_id) if (mask_dir / f"{i}.png").is_file()]
        if _only_zero_and_ignore(labels, masks):
            raise HarnessError(f"the masks of {root} hold only the values 0 and {IGNORE_INDEX}: with --mask-format "
                               f"index (the default) {IGNORE_INDEX} means ignore and only the background would be "
                               "scored; for 0/255 binary masks pass --mask-format binary")
    params = {"size": size_param(size), "root": str(root.resolve())}
    if mask_format != "index":  # index keeps the description (and the cache keys) of data read before formats
        params["mask_format"] = mask_format
    if colours is not None:
        params["colors"] = colours.digest
    return SegmentationData("folder", split, class_names, images, labels, ids, params)
