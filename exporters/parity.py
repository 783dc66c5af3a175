"""Parity of an exported artifact against its reference: logit differences, argmax agreement, accuracy change.

The reference is the PyTorch model for a built-in model's exports and the user's own ONNX file for
the variants of an ``--onnx`` target. Both sides are Engines fed the same validation images.
Agreement counts every pixel (labelled or not); pixel accuracy counts labelled pixels only (255 is
ignored), as everywhere in the harness.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from rich.table import Table
from rich.text import Text

from engines.base import Engine
from harness.data.base import SegmentationData
from harness.metrics import ConfusionMatrix
from reports.tables import ReadableTable

# Minimum argmax agreement with the reference, per precision (fractions). fp32 differs by float rounding only.
# fp16 and int8 change the arithmetic: the measured agreement of the reduced models is in the README.
DEFAULT_MIN_AGREEMENT = {"fp32": 0.999, "fp16": 0.995, "int8": 0.98}


@dataclass(frozen=True)
class ParityReport:
    """One artifact against its reference on ``n_images`` images (fractions in [0, 1])."""

    label: str
    precision: str
    n_images: int
    n_pixels: int
    max_abs_diff: float
    mean_abs_diff: float
    agreement: float
    reference_accuracy: float
    candidate_accuracy: float
    min_agreement: float

    @property
    def accuracy_delta(self) -> float:
        return self.candidate_accuracy - self.reference_accuracy

    @property
    def passed(self) -> bool:
        return self.agreement >= self.min_agreement

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy_delta": self.accuracy_delta, "passed": self.passed}


def compare(reference: Engine, candidate: Engine, data: SegmentationData, *, label: str, precision: str,
            min_agreement: float | None = None, batch_size: int = 16) -> ParityReport:
    """Run both opened engines on all of ``data`` and compare their logits and argmax maps."""
    threshold = DEFAULT_MIN_AGREEMENT[precision] if min_agreement is None else min_agreement
    ref_cm, cand_cm = ConfusionMatrix(data.num_classes), ConfusionMatrix(data.num_classes)
    max_abs, abs_sum, agree, n_values, n_pixels = 0.0, 0.0, 0, 0, 0
    for images, labels in data.batches(batch_size):
        x = images.numpy()
        ref, cand = reference.infer(x), candidate.infer(x)
        diff = np.abs(ref.astype(np.float64) - cand.astype(np.float64))
        max_abs = max(max_abs, float(diff.max()))
        abs_sum += float(diff.sum())
        n_values += diff.size
        ref_pred, cand_pred = ref.argmax(1), cand.argmax(1)
        agree += int((ref_pred == cand_pred).sum())
        n_pixels += ref_pred.size
        ref_cm.update(ref_pred, labels)
        cand_cm.update(cand_pred, labels)
    return ParityReport(label, precision, len(data), n_pixels, max_abs, abs_sum / n_values, agree / n_pixels,
                        ref_cm.scores().pixel_accuracy, cand_cm.scores().pixel_accuracy, threshold)


def parity_table(title: str, reports: list[ParityReport], reference: str = "torch") -> Table:
    """A rich table of parity reports: agreement and pixel accuracy in %, their change in points.

    ``reference`` names the reference in the accuracy column (``acc torch``, ``acc fp32 onnx``).
    """
    table = ReadableTable(title=f"{title} (agreement and accuracy in %)", key_columns=2)  # never cut to "…"
    for column in ("model", "precision", "max |Δlogit|", "mean |Δlogit|", "agree", "min", f"acc {reference}",
                   "acc export", "Δ acc", "parity"):
        table.add_column(column, justify="left" if column in ("model", "precision", "parity") else "right",
                         no_wrap=column in ("model", "precision"))
    for r in reports:
        table.add_row(r.label, r.precision, f"{r.max_abs_diff:.2g}", f"{r.mean_abs_diff:.2g}",
                      f"{100 * r.agreement:.3f}", f"{100 * r.min_agreement:g}", f"{100 * r.reference_accuracy:.2f}",
                      f"{100 * r.candidate_accuracy:.2f}", f"{100 * r.accuracy_delta:+.2f}",
                      Text("pass", style="green") if r.passed else Text("FAIL", style="red"))
    return table
