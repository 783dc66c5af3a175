"""Reading image + mask files into fixed-size arrays (shared by VOC and image folders).

Each file is read as it is displayed (its EXIF orientation applied); a mask must then have its image's
size, so labels can never be misaligned with pixels. Masks are lossless PNGs, decoded into class labels by
:mod:`harness.data.masks` under a mask format (index: the value is the class, 255 = ignore; binary: 0 and
non-zero). Files larger than ``MAX_IMAGE_PIXELS`` are refused before they are decoded (a decompression bomb
would exhaust memory).

Images: colour (RGB, RGBA without its alpha, palette, CMYK) or greyscale. Greyscale images (1-bit, 8-bit
"L", "LA" without its alpha, 16-bit) become RGB by repeating the grey value in the three channels; 16-bit
values are scaled to 8 bits (divided by 257 and rounded: 65535 is 255), never clipped.

Resize policy for a size H x W (``--image-size PX`` is PX x PX): scale the image, keeping its aspect ratio,
so that it covers H x W (the smallest scale at which both its height >= H and its width >= W), bilinear for
images and nearest for labels (so no new label values appear), then take the centred H x W crop.

Every problem with a file is one HarnessError naming that file.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from harness.data.base import IGNORE_INDEX
from harness.data.colours import ColourTable
from harness.data.masks import check_mask_mode, mask_to_labels
from harness.data.sizes import height_width
from harness.errors import HarnessError

# 40 megapixels: a 7300 x 5470 photograph, about 120 MB decoded as RGB. Far above VOC (500 x 375) and
# well below Pillow's own bomb limit, so this check always speaks first.
MAX_IMAGE_PIXELS = 40_000_000
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_MODE_NAMES = {"F": "floating point", "I": "32-bit", "LA": "greyscale with alpha", "PA": "palette with alpha"}


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


def _scaled_size(width: int, height: int, size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of a ``width`` x ``height`` image scaled, at its aspect ratio, to cover ``size`` (H, W)."""
    out_height, out_width = size
    scale = max(out_height / height, out_width / width)
    return max(out_width, round(width * scale)), max(out_height, round(height * scale))


def _resize_crop(img: Image.Image, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """``img`` scaled to cover ``size`` (H, W), then its centred H x W crop, as an array."""
    out_height, out_width = size
    nw, nh = _scaled_size(*img.size, size)
    img = img.resize((nw, nh), resample)
    left, top = (nw - out_width) // 2, (nh - out_height) // 2
    return np.asarray(img.crop((left, top, left + out_width, top + out_height)))


def read_mask(mask_path: Path, mask_format: str = "index") -> Image.Image:
    """The decoded mask at ``mask_path`` (a lossless PNG of a mode that holds labels under ``mask_format``), as
    displayed."""
    mask = _open(mask_path, "mask")
    if mask.format != "PNG":
        raise HarnessError(f"mask {mask_path} is a {mask.format} file; masks must be PNGs (lossless), "
                           "one class index a pixel")
    check_mask_mode(mask, mask_path, mask_format)
    return mask


def mask_labels(mask_path: Path, mask_format: str = "index", colours: ColourTable | None = None) -> np.ndarray:
    """The distinct label values of the mask at ``mask_path`` (255 = ignore included), :func:`mask_to_labels`."""
    return np.unique(mask_to_labels(read_mask(mask_path, mask_format), mask_path, mask_format, colours))


def to_rgb(image: Image.Image, image_path: Path) -> Image.Image:
    """``image`` as 8-bit RGB: greyscale repeated in the three channels, 16-bit values divided by 257 (rounded),
    alpha dropped. Floating-point and 32-bit values beyond 16 bits are refused (no scale is known for them)."""
    if image.mode in _SIXTEEN_BIT:
        raw = np.asarray(image)
        if raw.size and (int(raw.min()) < 0 or int(raw.max()) > 65535):
            raise HarnessError(f"image {image_path} is 32-bit greyscale (I) with values outside 0-65535; images "
                               "must be 8 or 16 bits a channel")
        wide = raw.astype(np.uint32)
        image = Image.fromarray(((wide * 2 + 257) // 514).astype(np.uint8))  # round(v / 257): 65535 -> 255
    elif image.mode not in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"):
        kind = _MODE_NAMES.get(image.mode, f"mode {image.mode}")
        raise HarnessError(f"image {image_path} is {kind} ({image.mode}); images must be 8 or 16 bits a channel "
                           "(greyscale, palette, RGB or RGBA)")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as e:
        raise HarnessError(f"image {image_path} ({image.mode}) cannot be converted to RGB: {e}") from None


def read_pair(image_path: Path, mask_path: Path, size: int | tuple[int, int], num_classes: int | None = None,
              mask_format: str = "index", colours: ColourTable | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (H, W, 3), labels uint8 (H, W)) at ``size`` (one side, or (H, W)), the mask read under
    ``mask_format`` (and ``colours`` for rgb). With ``num_classes``, a label outside 0..num_classes-1 (other
    than 255) is refused."""
    size = height_width(size)
    image, mask = _open(image_path, "image"), read_mask(mask_path, mask_format)
    scaled = _scaled_size(*image.size, size)
    if scaled[0] * scaled[1] > MAX_IMAGE_PIXELS:  # a long thin image: scaling its short side up explodes the other
        raise HarnessError(f"image {image_path} is {image.size[0]} x {image.size[1]}: scaled to cover "
                           f"{size[1]} x {size[0]} px it would be {scaled[0]} x {scaled[1]}, "
                           f"above the limit of {MAX_IMAGE_PIXELS:,} pixels; crop it to a less extreme aspect ratio")
    if image.size != mask.size:
        raise HarnessError(f"mask {mask_path} is {mask.size[0]} x {mask.size[1]} but its image {image_path} is "
                           f"{image.size[0]} x {image.size[1]} (after EXIF orientation); the labels would not "
                           "line up with the pixels")
    labels = mask_to_labels(mask, mask_path, mask_format, colours)
    if num_classes is not None:
        values = np.unique(labels)
        bad = values[(values >= num_classes) & (values != IGNORE_INDEX)]
        if bad.size:
            raise HarnessError(f"mask {mask_path} holds label {int(bad[0])}, but there are only {num_classes} "
                               f"classes (0..{num_classes - 1}, and {IGNORE_INDEX} = ignore)")
    rgb = to_rgb(image, image_path)
    return (_resize_crop(rgb, size, Image.Resampling.BILINEAR),
            _resize_crop(Image.fromarray(labels), size, Image.Resampling.NEAREST).astype(np.uint8))


def read_pairs(pairs: list[tuple[Path, Path]], size: int | tuple[int, int], num_classes: int | None = None,
               mask_format: str = "index", colours: ColourTable | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every (image, mask) pair of ``pairs`` at ``size``: images uint8 (N, H, W, 3), labels uint8 (N, H, W)."""
    height, width = height_width(size)
    images = np.empty((len(pairs), height, width, 3), dtype=np.uint8)
    labels = np.empty((len(pairs), height, width), dtype=np.uint8)
    for i, (image_path, mask_path) in enumerate(pairs):
        images[i], labels[i] = read_pair(image_path, mask_path, (height, width), num_classes, mask_format, colours)
    return images, labels
