"""Reading image + mask files into fixed-size arrays (shared by VOC and image folders).

Each file is read as it is displayed (its EXIF orientation applied); a mask must then have its image's
size, so labels can never be misaligned with pixels. Masks are lossless PNGs of class indices: palette
("P") or 8-bit greyscale ("L"), 255 = ignore. Files larger than ``MAX_IMAGE_PIXELS`` are refused before
they are decoded (a decompression bomb would exhaust memory).

Resize policy: scale so the shorter side equals ``size`` (bilinear for images, nearest for
masks, so no new label values appear), then take the centred ``size`` x ``size`` crop.

Every problem with a file is one HarnessError naming that file.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from harness.data.base import IGNORE_INDEX
from harness.errors import HarnessError

# 40 megapixels: a 7300 x 5470 photograph, about 120 MB decoded as RGB. Far above VOC (500 x 375) and
# well below Pillow's own bomb limit, so this check always speaks first.
MAX_IMAGE_PIXELS = 40_000_000
_MASK_MODES = {"P": "palette", "L": "8-bit greyscale"}
_HIGH_DEPTH_MODES = {"I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
_MODE_NAMES = {"RGB": "a colour image", "RGBA": "a colour image", "CMYK": "a colour image",
                    "YCbCr": "a colour image", "LA": "greyscale with alpha", "PA": "palette with alpha",
                    "1": "1-bit", "I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit", "I": "16- or 32-bit",
                    "F": "floating point"}


def _open(path: Path, role: str) -> Image.Image:
    """The fully decoded file at ``path`` as displayed (EXIF orientation applied); ``role`` is image or mask."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning and EXIF warnings
            with Image.open(path) as img:
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise _TooLarge(f"{width} x {height}")
                img.load()
                shown = ImageOps.exif_transpose(img)
                shown.format = img.format
                return shown
    except _TooLarge as e:
        problem = f"is {e} pixels, above the limit of {MAX_IMAGE_PIXELS:,} pixels; downscale it"
    except Image.DecompressionBombError as e:  # Pillow's own, larger limit: raised while opening
        found = re.search(r"\((\d+) pixels\)", str(e))
        pixels = f"{int(found.group(1)):,} pixels" if found else "larger"
        problem = f"is {pixels}, above the limit of {MAX_IMAGE_PIXELS:,} pixels; downscale it"
    except Image.UnidentifiedImageError:
        problem = "is not an image file Pillow can read (empty, text or another format)"
    except OSError as e:
        # An errno means the file system failed; without one it is Pillow's decoder ("image file is truncated").
        problem = f"cannot be read: {e.strerror}" if e.errno else f"is damaged or truncated ({str(e)[:80]})"
    except Exception as e:  # Pillow's decoders raise SyntaxError, ValueError, EOFError, zlib.error, ...
        problem = f"is damaged or truncated ({type(e).__name__}: {str(e)[:80]})"
    raise HarnessError(f"{role} {path} {problem}")


class _TooLarge(Exception):
    pass


def _scaled_size(width: int, height: int, size: int) -> tuple[int, int]:
    """The size of a ``width`` x ``height`` image scaled so that its shorter side is ``size``."""
    scale = size / min(width, height)
    return max(size, round(width * scale)), max(size, round(height * scale))


def _resize_crop(img: Image.Image, size: int, resample: Image.Resampling) -> np.ndarray:
    nw, nh = _scaled_size(*img.size, size)
    img = img.resize((nw, nh), resample)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)))


def read_mask(mask_path: Path) -> Image.Image:
    """The decoded mask at ``mask_path`` (a lossless palette or 8-bit greyscale PNG), as displayed."""
    mask = _open(mask_path, "mask")
    if mask.format != "PNG":
        raise HarnessError(f"mask {mask_path} is a {mask.format} file; masks must be PNGs (lossless), "
                           "one class index a pixel")
    if mask.mode not in _MASK_MODES:
        kind = _MODE_NAMES.get(mask.mode, f"mode {mask.mode}")
        raise HarnessError(f"mask {mask_path} is {kind}; masks must be single-channel (palette or 8-bit "
                           "greyscale) PNGs of class indices, 255 = ignore")
    return mask


def mask_labels(mask_path: Path) -> np.ndarray:
    """The distinct label values of the mask at ``mask_path`` (255 = ignore included)."""
    return np.unique(np.asarray(read_mask(mask_path)))


def read_pair(image_path: Path, mask_path: Path, size: int, num_classes: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (size, size, 3), mask uint8 (size, size)). With ``num_classes``, a mask label outside
    0..num_classes-1 (other than 255) is refused."""
    image, mask = _open(image_path, "image"), read_mask(mask_path)
    if image.mode in _HIGH_DEPTH_MODES:  # converting to 8-bit RGB would clip, not scale: a silently wrong image
        raise HarnessError(f"image {image_path} is {_MODE_NAMES.get(image.mode, image.mode)} ({image.mode}); "
                           "images must be 8 bits a channel (greyscale, palette, RGB or RGBA)")
    scaled = _scaled_size(*image.size, size)
    if scaled[0] * scaled[1] > MAX_IMAGE_PIXELS:  # a long thin image: scaling its short side up explodes the other
        raise HarnessError(f"image {image_path} is {image.size[0]} x {image.size[1]}: scaled to a shorter side of "
                           f"{size} px it would be {scaled[0]} x {scaled[1]}, above the limit of "
                           f"{MAX_IMAGE_PIXELS:,} pixels; crop it to a less extreme aspect ratio")
    if image.size != mask.size:
        raise HarnessError(f"mask {mask_path} is {mask.size[0]} x {mask.size[1]} but its image {image_path} is "
                           f"{image.size[0]} x {image.size[1]} (after EXIF orientation); the labels would not "
                           "line up with the pixels")
    if num_classes is not None:
        values = np.unique(np.asarray(mask))
        bad = values[(values >= num_classes) & (values != IGNORE_INDEX)]
        if bad.size:
            raise HarnessError(f"mask {mask_path} holds label {int(bad[0])}, but there are only {num_classes} "
                               f"classes (0..{num_classes - 1}, and {IGNORE_INDEX} = ignore)")
    try:
        rgb = image.convert("RGB")
    except (ValueError, OSError) as e:
        raise HarnessError(f"image {image_path} ({image.mode}) cannot be converted to RGB: {e}") from None
    return (_resize_crop(rgb, size, Image.Resampling.BILINEAR),
            _resize_crop(mask, size, Image.Resampling.NEAREST).astype(np.uint8))


def read_pairs(pairs: list[tuple[Path, Path]], size: int, num_classes: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((len(pairs), size, size, 3), dtype=np.uint8)
    labels = np.empty((len(pairs), size, size), dtype=np.uint8)
    for i, (image_path, mask_path) in enumerate(pairs):
        images[i], labels[i] = read_pair(image_path, mask_path, size, num_classes)
    return images, labels
