"""The size of a data set's images: one side (square, ``--image-size 256``) or height x width (``192x256``).

A square size is an ``int`` everywhere (so a square given as ``256x256`` is the same data, with the same cache keys,
as ``256``); a non-square one is an :class:`ImageSize` ``(height, width)``, printed as ``HxW``.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class ImageSize(NamedTuple):
    """A non-square image size, height first (as the arrays: N, H, W)."""

    height: int
    width: int

    def __str__(self) -> str:  # as the option is written: --image-size 192x256
        return f"{self.height}x{self.width}"


def image_size(height: int, width: int) -> int | ImageSize:
    """The one representation of a height x width size: the side when square, else an ImageSize."""
    return height if height == width else ImageSize(height, width)


def height_width(size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a size given as one side or as (height, width)."""
    if isinstance(size, tuple):
        height, width = size
        return int(height), int(width)
    return int(size), int(size)


def size_param(size: int | tuple[int, int]) -> Any:
    """The size as recorded in a data set's description (JSON): the side when square, else [height, width]."""
    height, width = height_width(size)
    return height if height == width else [height, width]


def size_text(size: int | tuple[int, int]) -> str:
    """The size as written on the command line: ``256`` or ``192x256``."""
    return str(image_size(*height_width(size)))
