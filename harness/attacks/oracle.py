"""Loss oracles for score-based black-box attacks: the engine's numpy logits in, one score per image out.

An oracle only reads what an engine returns (logits), so a black-box attack can rank its
candidates without a model or gradients. Larger scores are more adversarial for every oracle.
The cross entropy is the definition of harness/attacks/loss.py (the paper's eq. 6), computed in
numpy: an :class:`Oracle` is built once per run from the labels, so that scoring a query costs
only a few passes over its logits (the attack's time should go to the engine, not to scoring).
"""

from __future__ import annotations

import numpy as np

from harness.data.base import IGNORE_INDEX
from harness.errors import HarnessError

ORACLES = ("ce", "margin", "mce", "mmargin")
MASKED = ("mce", "mmargin")  # scores of the still-correct pixels only
_LOG_SMALLEST_NORMAL = float(np.log(np.finfo(np.float32).tiny))  # about -87.3


class Oracle:
    """Scores of the engine's logits for one set of images and labels.

    ``labels`` int (N, H, W), values in 0..254 or 255 (ignored); every image needs a labelled
    pixel (HarnessError otherwise). Each method takes logits float32 (n, K, H, W) of the images
    ``rows`` (indices into the N images, one per row of logits; None: all N, in order).

    ``ce``: the paper's oracle, mean pixel-wise cross entropy over the labelled pixels.
    ``margin``: mean over labelled pixels of ``max_{k != y} z_k - z_y``, the correct-class
    margin negated so that, as for ``ce``, a larger value means a stronger attack.

    The masked oracles score only the pixels the logits still classify correctly (argmax == label, the
    first maximum on ties, as :meth:`predictions`); a pixel already fooled counts a constant, the most a
    correct pixel can score, so fooling a pixel never lowers the score and pushing a fooled pixel further
    never raises it: the attack's queries go to the pixels still right.
    ``mce``: per pixel the cross entropy ``log Σ exp z - z_y`` where correct (at most log K there, since
    z_y is the maximum), log K where fooled; the mean over labelled pixels.
    ``mmargin``: per pixel ``min(max_{k != y} z_k - z_y, 0)``: the margin where correct (<= 0), 0 where
    fooled; the mean over labelled pixels.
    """

    def __init__(self, name: str, labels: np.ndarray) -> None:
        if name not in ORACLES:
            raise ValueError(f"unknown oracle {name!r}; choose from: {', '.join(ORACLES)}")
        if labels.ndim != 3:
            raise ValueError(f"labels must be (N, H, W), got shape {labels.shape}")
        labelled = labels != IGNORE_INDEX
        self.labelled = labelled.sum(axis=(1, 2), dtype=np.int64)  # labelled pixels per image, (N,)
        if self.labelled.min() == 0:
            raise HarnessError(f"image {int(np.argmin(self.labelled))} has no labelled pixels: nothing to attack")
        classes = labels[labelled]
        if classes.min() < 0 or classes.max() > IGNORE_INDEX:
            raise HarnessError(f"labels must be class indices 0..{IGNORE_INDEX - 1} or {IGNORE_INDEX} (ignored)")
        self.name = name
        self.labels = labels.astype(np.uint8)  # pred (< K <= 255) never equals an ignored 255
        self.max_label = int(classes.max())
        n, h, w = labels.shape
        self._pixels = h * w
        # Per image and pixel, where its true class's logit lies in the image's (K, H*W) logits.
        # Ignored pixels point at class 0; their weight is 0.
        self._true_logit = (np.where(labelled, labels, 0).reshape(n, -1) * self._pixels
                            + np.arange(self._pixels)).astype(np.int64)
        self._all_rows: tuple[int, np.ndarray] | None = None  # (K, flat indices for all N images), once K is known
        self._weights = (labelled.reshape(n, -1) / self.labelled[:, None]).astype(np.float32)[:, :, None]

    def loss(self, logits: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """One score per row of ``logits``, float64 (n,)."""
        flat, true_class, weights = self._rows(logits, rows)
        if self.name in ("ce", "mce"):
            per_pixel = _log_sum_exp(flat)
        else:
            others = flat.copy()
            others.reshape(-1)[true_class] = -np.inf
            per_pixel = others.max(axis=1)
        per_pixel -= flat.reshape(-1)[true_class]
        if self.name in MASKED:
            labels = self.labels if rows is None else self.labels[rows]
            correct = (argmax_classes(logits) == labels).reshape(per_pixel.shape)
            cap = np.float32(np.log(logits.shape[1]) if self.name == "mce" else 0)
            # On a correct pixel the score is at most the cap in exact arithmetic; the minimum also holds it in float32.
            per_pixel = np.where(correct, np.minimum(per_pixel, cap), cap)
        if not np.isfinite(per_pixel).all():  # an ignored pixel's inf or NaN times its weight 0 is NaN
            per_pixel = np.where(weights[:, :, 0] > 0, per_pixel, np.float32(0))
        # A batched dot product (BLAS): the weighted mean over pixels, 5x faster than multiply-and-sum.
        return np.matmul(per_pixel[:, None, :], weights)[:, 0, 0].astype(np.float64)

    def predictions(self, logits: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Class maps uint8 (n, H, W) of ``logits`` (numpy's argmax: the first maximum on ties), and
        per row the number of labelled pixels they get right, int64 (n,)."""
        self._check(logits, rows)
        pred = argmax_classes(logits)
        labels = self.labels if rows is None else self.labels[rows]
        return pred, (pred == labels).sum(axis=(1, 2), dtype=np.int64)

    def _check(self, logits: np.ndarray, rows: np.ndarray | None) -> None:
        n = len(self.labels) if rows is None else len(rows)
        if logits.ndim != 4 or logits.shape[0] != n or logits.shape[2:] != self.labels.shape[1:]:
            raise ValueError(f"logits of shape {logits.shape} do not fit {n} label maps of {self.labels.shape[1:]}")
        if not 1 < logits.shape[1] <= IGNORE_INDEX or logits.shape[1] <= self.max_label:
            raise HarnessError(f"the engine returned {logits.shape[1]} classes, which does not fit labels "
                               f"0..{self.max_label} (and at most {IGNORE_INDEX} classes)")

    def _rows(self, logits: np.ndarray, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Logits as (n, K, H*W), the flat index into them of each pixel's true-class logit (n, H*W) and
        the pixel weights (n, H*W, 1) (1 / labelled pixels of its image, 0 where ignored)."""
        self._check(logits, rows)
        n, k = logits.shape[:2]
        flat = logits.reshape(n, k, self._pixels)
        weights = self._weights if rows is None else self._weights[rows]
        return flat, self._index(flat, rows), weights

    def _index(self, flat: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        """Flat indices into ``flat`` (n, K, H*W) of each pixel's true-class logit, (n, H*W)."""
        n, k, pixels = flat.shape
        if rows is None:
            if self._all_rows is None or self._all_rows[0] != k:
                self._all_rows = (k, self._true_logit + np.arange(0, n * k * pixels, k * pixels)[:, None])
            return self._all_rows[1]
        return self._true_logit[rows] + np.arange(0, n * k * pixels, k * pixels)[:, None]


def _log_sum_exp(flat: np.ndarray) -> np.ndarray:
    """log Σ_k exp(z_k) per pixel of ``flat`` (n, K, P), float32 (n, P). Summing the exponentials
    directly saves two passes over the logits. Where that sum overflows (a logit above about 88)
    or leaves float32's normal range (every logit of a pixel below about -87, where the sum loses
    precision), the per-pixel maximum is subtracted first."""
    with np.errstate(all="ignore"):  # an infinite logit (a broken engine) gives inf or NaN, not a warning
        out = np.log(np.exp(flat).sum(axis=1))
        if not (np.isfinite(out).all() and out.min() >= _LOG_SMALLEST_NORMAL):
            top = flat.max(axis=1)
            out = np.log(np.exp(flat - top[:, None]).sum(axis=1))
            out += top
    return out


def argmax_classes(logits: np.ndarray) -> np.ndarray:
    """``logits.argmax(axis=1)`` of (N, K, H, W) as uint8, the first maximum on ties, about 8x faster.

    numpy's argmax over a middle axis walks the classes one pixel at a time. Here every pass runs
    vectorised over all pixels: each class that reaches the pixel's maximum gets the code K - k,
    so the largest code is the first maximum's (K <= 255: labels are uint8 with 255 reserved).
    A pixel with a NaN logit has no maximum; it gets class K - 1 (unlike numpy's argmax, which
    returns the NaN's class).
    """
    k = logits.shape[1]
    at_max = logits == logits.max(axis=1, keepdims=True)
    codes = at_max.view(np.uint8) * np.arange(k, 0, -1, dtype=np.uint8)[:, None, None]
    return np.uint8(k) - np.maximum(codes.max(axis=1), np.uint8(1))
