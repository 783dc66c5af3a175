"""Decoding a mask file into uint8 class labels (255 = ignore) under an explicit mask format.

``index`` (the default): a pixel's value is its class number and 255 is "ignore" (VOC's convention). Accepted
modes: palette "P" (the palette index is the class, as VOC), 8-bit greyscale "L", 1-bit "1" (classes 0 and 1),
16-bit greyscale "I;16"/"I;16B"/"I;16L" and 32-bit "I" (each value below 255 is a class; 255 and 65535 are
"ignore"; any other value is refused, naming it).

``binary``: 0 is class 0 (background) and every other value is class 1 (foreground), in any of those modes and
in grey RGB(A) files (R = G = B, opaque), so the common 0/255 (or 0/1, 0/65535, anti-aliased 0..255) export of
annotation tools is read as two classes and nothing is ignored. A mask holding exactly 1 and 255 besides 0 is
refused: that is an index mask with 255 = ignore, which binary would silently turn into foreground.

``rgb``: colour masks (RGB, opaque RGBA, or palette read as its colours), each exact colour a class as
``DIR/colors.txt`` lists them (:mod:`harness.data.colours`).

Any other combination (colour masks without ``rgb``, alpha, floating point) is refused in one line that says
what to do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.base import IGNORE_INDEX
from harness.data.colours import COLOURS_FILE, ColourTable, colours_to_labels
from harness.errors import HarnessError

MASK_FORMATS = ("index", "binary", "rgb")
BINARY_CLASSES = ["background", "foreground"]
_WIDE_IGNORE = 65535  # the 16-bit counterpart of 255: "ignore" in 16-bit index masks
_EIGHT_BIT = ("P", "L")
_WIDE = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_COLOUR = ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV")
_KIND = {"L": "8-bit greyscale", "1": "1-bit", "LA": "greyscale with alpha", "La": "greyscale with alpha",
         "PA": "palette with alpha", "F": "floating point", "I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit",
         "I": "32-bit"}
MASK_MODES = ("P", "L", "1", *_WIDE)
_COLOUR_MODES = ("RGB", "RGBA", "P")


def check_mask_format(mask_format: str) -> None:
    if mask_format not in MASK_FORMATS:
        raise HarnessError(f"unknown mask format {mask_format!r}; choose from: {', '.join(MASK_FORMATS)}")


def check_mask_mode(mask: Image.Image, path: Path, mask_format: str = "index") -> None:
    """Refuse, in one line naming ``path``, a mask whose mode holds no labels under ``mask_format``."""
    if mask.mode in (_COLOUR_MODES if mask_format == "rgb" else MASK_MODES) \
            or (mask_format == "binary" and mask.mode in ("RGB", "RGBA")):
        return
    if mask_format == "rgb":
        raise HarnessError(f"mask {path} is {_KIND.get(mask.mode, f'mode {mask.mode}')} ({mask.mode}); "
                           f"--mask-format rgb reads colour masks (RGB, opaque RGBA or palette) through {COLOURS_FILE}")
    if mask.mode in _COLOUR:
        raise HarnessError(f"mask {path} is a colour image ({mask.mode}); masks must be single-channel PNGs of "
                           "class indices: convert it to an index mask (palette or 8-bit greyscale, one class "
                           f"number a pixel, 255 = ignore), or list its colours in {COLOURS_FILE} beside images/ and "
                           "masks/ and pass --mask-format rgb")
    kind = _KIND.get(mask.mode, f"mode {mask.mode}")
    raise HarnessError(f"mask {path} is {kind} ({mask.mode}); masks must be single-channel PNGs of class indices "
                       "(palette, 8-bit or 16-bit greyscale, or 1-bit)")


def mask_to_labels(mask: Image.Image, path: Path, mask_format: str = "index",
                   colours: ColourTable | None = None) -> np.ndarray:
    """The labels uint8 (H, W) of the decoded ``mask`` (read from ``path``, named in every error) under
    ``mask_format``: class numbers, 255 = ignore (index); 0 and 1 (binary); ``colours``' labels (rgb)."""
    check_mask_format(mask_format)
    check_mask_mode(mask, path, mask_format)
    if mask_format == "rgb":
        if colours is None:
            raise ValueError("--mask-format rgb needs the colour table")
        return colours_to_labels(_opaque_rgb(mask, path), colours, path)
    if mask_format == "binary":
        return _binary(_grey(mask, path) if mask.mode in ("RGB", "RGBA") else np.asarray(mask), path)
    raw = np.asarray(mask)
    if mask.mode == "1":
        return raw.astype(np.uint8)
    if mask.mode in _EIGHT_BIT:
        return np.ascontiguousarray(raw, dtype=np.uint8)
    return _wide_index(raw, path)


def _opaque_rgb(mask: Image.Image, path: Path) -> np.ndarray:
    """uint8 (H, W, 3) of an RGB, RGBA (every pixel opaque) or palette mask."""
    if mask.mode == "RGBA":
        alpha = np.asarray(mask.getchannel("A"))
        if (alpha != 255).any():
            raise HarnessError(f"mask {path} has transparent pixels; a mask's pixels must all be opaque (a class "
                               "colour each), so save it without transparency")
    return np.asarray(mask.convert("RGB"))


def _grey(mask: Image.Image, path: Path) -> np.ndarray:
    """The one channel of a grey (R = G = B) opaque RGB(A) mask, read as binary."""
    rgb = _opaque_rgb(mask, path)
    if not ((rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])).all():
        raise HarnessError(f"mask {path} holds colours, not only black and grey/white: --mask-format binary reads "
                           f"0 as background and any other grey as foreground; for colour classes list them in "
                           f"{COLOURS_FILE} and pass --mask-format rgb")
    return rgb[..., 0]


def _binary(raw: np.ndarray, path: Path) -> np.ndarray:
    if raw.dtype != bool:
        nonzero = np.unique(raw[raw != 0])
        if nonzero.size == 2 and nonzero[0] == 1 and nonzero[1] == IGNORE_INDEX:
            raise HarnessError(f"mask {path} holds the values 0, 1 and {IGNORE_INDEX}: that is an index mask with "
                               f"{IGNORE_INDEX} = ignore, which --mask-format binary would count as foreground; "
                               "use --mask-format index")
    return (raw != 0).astype(np.uint8)


def _wide_index(raw: np.ndarray, path: Path) -> np.ndarray:
    """16- or 32-bit class numbers: each below 255, or 255 / 65535 for ignore."""
    wide = raw.astype(np.int32, copy=False)  # 16-bit values fit; "I" is int32 already
    bad = (wide < 0) | ((wide > IGNORE_INDEX) & (wide != _WIDE_IGNORE))
    if bad.any():
        value = int(wide[bad][0])
        raise HarnessError(f"mask {path} holds the value {value}: index masks hold class numbers 0-{IGNORE_INDEX - 1} "
                           f"({IGNORE_INDEX} or {_WIDE_IGNORE} = ignore); for a 0/{_WIDE_IGNORE} binary mask pass "
                           "--mask-format binary")
    labels = np.where(wide == _WIDE_IGNORE, IGNORE_INDEX, wide)
    return labels.astype(np.uint8)
