"""Built-in synthetic scenes: low-contrast, finely striped shapes on a textured background.

An object's class is carried by its shape and by a faint stripe pattern of its own (orientation and
period per class); its colour is random and only a little off the colours it covers, and the background
draws its colours from the same distribution. Nothing coarse, such as a hue band per class, gives the
class away, so the models learn low-amplitude cues, as models trained on natural images do, and an
8/255 perturbation can move them (the paper's attacks cost tens of points, as on VOC), while small CPU
models still learn the task in minutes. The scenes vary in shape, colour, texture, size, rotation and
occlusion. Labels carry a one-pixel VOC-style 255 "ignore" band on every boundary between regions.
Generation is deterministic from the seed.
"""

from __future__ import annotations

import colorsys

import numpy as np

from harness.data.base import IGNORE_INDEX, SegmentationData

CLASS_NAMES = ["background", "disc", "rectangle", "triangle", "ring", "cross", "star"]
# Per object class: stripe orientation (radians) and period (pixels) of its texture.
_CLASS_STRIPES = {cls: (np.pi * cls / 6, 3.0 + cls % 3) for cls in range(1, 7)}
_STRIPE_AMPLITUDE = 0.10  # relative brightness swing: about +-13/255 on a mid-grey object
# Root-mean-square distance per channel between an object's colour and the mean colour it covers.
_CONTRAST = (0.08, 0.22)
# Object radius range in pixels at 64 x 64 (scaled with the image): large against the
# FCN strides (8 to 32), as VOC's objects are against 500-pixel images.
_RADIUS = (10.0, 22.0)
DEFAULT_SIZE = 64
DEFAULT_TRAIN = 1000
DEFAULT_VAL = 200
# Bump when the generator changes, so cached data and checkpoints trained on older scenes are not reused.
GENERATOR_VERSION = 4


def _rotated(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - cx, yy - cy
    return c * dx + s * dy, -s * dx + c * dy


def _shape_mask(cls: int, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float,
                angle: float, rng: np.random.Generator) -> np.ndarray:
    u, v = _rotated(xx, yy, cx, cy, angle)
    rho = np.hypot(u, v)
    if cls == 1:  # disc
        return rho <= r
    if cls == 2:  # rectangle, random aspect ratio
        aspect = rng.uniform(0.45, 1.0)
        return (np.abs(u) <= r) & (np.abs(v) <= r * aspect)
    if cls == 3:  # equilateral-ish triangle: intersection of three half-planes
        mask = np.ones_like(u, dtype=bool)
        for k in range(3):
            a = 2 * np.pi * k / 3
            mask &= (np.cos(a) * u + np.sin(a) * v) <= r * 0.55
        return mask
    if cls == 4:  # ring
        return (rho <= r) & (rho >= r * rng.uniform(0.3, 0.45))
    if cls == 5:  # cross (plus sign)
        arm = r * rng.uniform(0.3, 0.42)
        return ((np.abs(u) <= r) & (np.abs(v) <= arm)) | ((np.abs(v) <= r) & (np.abs(u) <= arm))
    if cls == 6:  # five-pointed star from a polar radius profile
        theta = np.arctan2(v, u)
        return rho <= r * (0.7 + 0.3 * np.cos(5 * theta))
    raise ValueError(cls)


def _texture(h: int, w: int, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A multiplicative brightness texture in roughly [0.75, 1.25]: plain, stripes, checks or noise."""
    kind = rng.integers(4)
    if kind == 0:
        return np.ones((h, w))
    if kind == 1:
        a = rng.uniform(0, np.pi)
        period = rng.uniform(3, 8)
        return 1 + 0.2 * np.sin(2 * np.pi * (np.cos(a) * xx + np.sin(a) * yy) / period)
    if kind == 2:
        cell = int(rng.integers(2, 6))
        return 1 + 0.18 * (((xx // cell) + (yy // cell)) % 2 * 2 - 1)
    return 1 + rng.uniform(-0.22, 0.22, size=(h, w))


def _hsv(h_deg: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb((h_deg % 360) / 360, s, v))


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """One RGB colour in [0, 1]: any hue, saturation up to 0.8, brightness 0.2 to 0.9. The background's two
    gradient colours, and the direction in which an object's colour leaves what it covers. (The textured
    background can leave [0, 1] before the final clip, so an object's contrast is approximate there.)"""
    return _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.8), rng.uniform(0.2, 0.9))


def _stripes(cls: int, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """The class's multiplicative stripe texture, 1 +- _STRIPE_AMPLITUDE."""
    angle, period = _CLASS_STRIPES[cls]
    return 1 + _STRIPE_AMPLITUDE * np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period)


def _scene(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    # Background: a colour gradient with a random texture.
    c0, c1 = _random_colour(rng), _random_colour(rng)
    a = rng.uniform(0, 2 * np.pi)
    t = ((np.cos(a) * xx + np.sin(a) * yy) / size + 1) / 2
    image = (1 - t)[..., None] * c0 + t[..., None] * c1
    image *= _texture(size, size, xx, yy, rng)[..., None]
    label = np.zeros((size, size), dtype=np.uint8)

    scale = size / 64
    for _ in range(int(rng.integers(2, 5))):
        cls = int(rng.integers(1, len(CLASS_NAMES)))
        r = rng.uniform(*_RADIUS) * scale
        cx, cy = rng.uniform(0, size), rng.uniform(0, size)
        mask = _shape_mask(cls, xx, yy, cx, cy, r, rng.uniform(0, 2 * np.pi), rng)
        if mask.sum() < 4:
            continue
        # A random colour direction, scaled to a low contrast against what the object covers.
        covered = image[mask].mean(axis=0)
        direction = _random_colour(rng) - covered
        direction /= np.linalg.norm(direction) + 1e-9
        colour = np.clip(covered + direction * rng.uniform(*_CONTRAST) * np.sqrt(3), 0, 1)
        layer = colour[None, None, :] * _stripes(cls, xx, yy)[..., None]
        image[mask] = layer[mask]  # later objects occlude earlier ones
        label[mask] = cls

    image = np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1)
    border = np.zeros_like(label, dtype=bool)
    border[:, :-1] |= label[:, :-1] != label[:, 1:]
    border[:-1, :] |= label[:-1, :] != label[1:, :]
    label[border] = IGNORE_INDEX
    return (image * 255 + 0.5).astype(np.uint8), label


def generate(split: str, n: int, size: int = DEFAULT_SIZE, seed: int = 0) -> SegmentationData:
    """Generate ``n`` scenes of ``size`` x ``size``; train and val use disjoint random streams."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be train or val, got {split!r}")
    if size < 16:
        raise ValueError("image size must be >= 16")
    stream = np.random.SeedSequence([seed, 0 if split == "train" else 1])
    rng = np.random.default_rng(stream)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.empty((n, size, size), dtype=np.uint8)
    for i in range(n):
        images[i], labels[i] = _scene(size, rng)
    ids = [f"synthetic-{split}-{i:05d}" for i in range(n)]
    params = {"size": size, "seed": seed, "n": n, "generator": GENERATOR_VERSION}
    return SegmentationData("synthetic", split, list(CLASS_NAMES), images, labels, ids, params)
