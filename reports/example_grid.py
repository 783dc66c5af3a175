"""The paper's Figures 1-2: adversarial examples as a grid of images and segmentations (PNG, no display).

Columns, as in the paper: clean image, perturbation (amplified so that ±ε spans black to white), adversarial
image, segmentation of the clean image, segmentation of the adversarial image. One row per image; a legend
of the class palette below.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from harness.data.base import IGNORE_INDEX
from harness.fileio import atomic_path
from reports.figures import plain_text

IGNORE_COLOUR = (255, 255, 255)


def palette(num_classes: int) -> np.ndarray:
    """uint8 (num_classes, 3): PASCAL VOC's colour map (background black, then dark red, green, olive, ...)."""
    colours = np.zeros((num_classes, 3), np.uint8)
    for index in range(num_classes):
        value, r, g, b = index, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        colours[index] = (r, g, b)
    return colours


def colourise(classes: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) of a class map (H, W); the ignore label 255 is white."""
    out = np.empty((*classes.shape, 3), np.uint8)
    ignore = classes == IGNORE_INDEX
    out[~ignore] = colours[np.minimum(classes[~ignore], len(colours) - 1)]
    out[ignore] = IGNORE_COLOUR
    return out


def amplified(clean: np.ndarray, adversarial: np.ndarray, eps: float) -> np.ndarray:
    """(H, W, 3) in [0, 1]: the perturbation with 0 as mid-grey and ±ε/255 as 0 and 1."""
    delta = (adversarial - clean).transpose(1, 2, 0)
    return np.clip(0.5 + delta * (255.0 / (2 * eps)), 0, 1)


def plot_example_grid(clean: np.ndarray, adversarial: np.ndarray, clean_pred: np.ndarray,
                      adversarial_pred: np.ndarray, class_names: Sequence[str], eps: float,
                      path: str | os.PathLike, title: str) -> None:
    """Write the grid to ``path`` (atomic). ``clean``/``adversarial`` float32 (N, 3, H, W) in [0, 1];
    ``clean_pred``/``adversarial_pred`` class maps (N, H, W); ``eps`` on the 0-255 scale."""
    n = len(clean)
    colours = palette(len(class_names))
    headers = ["clean image", f"perturbation (x{255 / (2 * eps):.0f})", "adversarial image",
               "clean prediction", "adversarial prediction"]
    figure = Figure(figsize=(10, 2.1 * n + 1.0), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(n, 5, squeeze=False)
    for row in range(n):
        panels = [clean[row].transpose(1, 2, 0), amplified(clean[row], adversarial[row], eps),
                  adversarial[row].transpose(1, 2, 0), colourise(clean_pred[row], colours),
                  colourise(adversarial_pred[row], colours)]
        for column, panel in enumerate(panels):
            axes = grid[row][column]
            axes.imshow(panel, interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            if row == 0:
                axes.set_title(headers[column], fontsize=10)
    handles = [Patch(facecolor=colours[i] / 255, edgecolor="black", linewidth=0.5, label=name)
               for i, name in enumerate(class_names)]
    plain_text(figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 7), fontsize=9,
                             frameon=False, title="class palette (white: ignore)", title_fontsize=9))
    figure.suptitle(title, fontsize=11, parse_math=False)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
