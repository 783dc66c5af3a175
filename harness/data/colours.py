"""Colour masks (``--mask-format rgb``): ``DIR/colors.txt`` maps each exact RGB colour to a class.

``colors.txt`` (UTF-8, :func:`harness.data.listfiles.read_lines`) lists one class a line, in class order (the
first line is class 0): its colour as three integers 0-255 (``128 0 0`` or ``128,0,0``) or as ``#800000``.
One line may end with the word ``ignore``: pixels of that colour are ignored (label 255) and the line is no
class. Every colour once; 2 to 255 classes. A mask pixel of a colour the file does not list is refused (the
colour and where it is are named): colours are matched exactly, never to the nearest, so a lossy or
anti-aliased export is an error rather than a silently wrong label.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.data.base import IGNORE_INDEX, MAX_CLASSES
from harness.data.listfiles import read_lines
from harness.errors import HarnessError

COLOURS_FILE = "colors.txt"
_HEX = re.compile(r"#([0-9a-fA-F]{6})")


@dataclass(frozen=True)
class ColourTable:
    """Exact colours and their labels: ``codes`` sorted (R << 16 | G << 8 | B, int32), ``labels`` uint8 beside
    them (255 for the ignore colour); ``num_classes`` class lines; ``digest`` identifies the mapping."""

    path: Path
    codes: np.ndarray
    labels: np.ndarray
    num_classes: int
    digest: str


def _colour(text: str, where: str) -> tuple[int, int, int]:
    parts = [p for p in re.split(r"[\s,]+", text.strip()) if p]
    if len(parts) == 1 and _HEX.fullmatch(parts[0]):
        value = int(parts[0][1:], 16)
        return value >> 16, (value >> 8) & 255, value & 255
    if len(parts) == 3 and all(p.isascii() and p.isdigit() and int(p) <= 255 for p in parts):
        r, g, b = (int(p) for p in parts)
        return r, g, b
    raise HarnessError(f"{where} is {text[:40]!r}; write a colour as three integers 0-255 (128 0 0) or as #800000, "
                       "optionally followed by the word ignore")


def read_colours(path: Path) -> ColourTable:
    """The colour table of ``path`` (see the module's docstring); every problem is one line naming the file."""
    colours: list[tuple[int, int, int]] = []
    ignore: tuple[int, int, int] | None = None
    for number, line in enumerate(read_lines(path), start=1):
        where = f"{path} line {number}"
        words = line.split()
        if words[-1].lower() == "ignore":
            if ignore is not None:
                raise HarnessError(f"{where} names a second ignore colour; one colour may be ignored")
            ignore = _colour(line[: line.lower().rindex("ignore")], where)
            continue
        colours.append(_colour(line, where))
    if not 2 <= len(colours) <= MAX_CLASSES:
        raise HarnessError(f"{path} lists {len(colours)} class colours; list 2 to {MAX_CLASSES}, one a line "
                           "(the first is class 0)")
    every = colours + ([ignore] if ignore is not None else [])
    if len(set(every)) != len(every):
        twice = next(c for c in every if every.count(c) > 1)
        raise HarnessError(f"{path} lists the colour {twice} more than once; each colour is one class")
    codes = np.array([(r << 16) | (g << 8) | b for r, g, b in every], np.int32)
    labels = np.array([*range(len(colours)), *([IGNORE_INDEX] if ignore is not None else [])], np.uint8)
    order = np.argsort(codes)
    digest = hashlib.sha256(repr((colours, ignore)).encode()).hexdigest()[:16]
    return ColourTable(path, codes[order], labels[order], len(colours), digest)


def colours_to_labels(rgb: np.ndarray, table: ColourTable, mask_path: Path) -> np.ndarray:
    """The labels uint8 (H, W) of the colour mask ``rgb`` (uint8 (H, W, 3)); an unlisted colour is refused."""
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    at = np.clip(np.searchsorted(table.codes, codes), 0, len(table.codes) - 1)
    unmatched = table.codes[at] != codes
    if unmatched.any():
        y, x = (int(v[0]) for v in np.nonzero(unmatched))
        r, g, b = (int(v) for v in rgb[y, x])
        count = int(unmatched.sum())
        raise HarnessError(f"mask {mask_path} holds the colour ({r}, {g}, {b}) at x={x}, y={y} ({count:,} pixels) "
                           f"that {table.path} does not list; colours are matched exactly: add it (a class, or "
                           "ignore) or fix the mask")
    return table.labels[at]
