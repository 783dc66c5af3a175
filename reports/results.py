"""The results.json schema of DESIGN.md: records of (model, engine, precision, attack, params)."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from typing import Any

from harness import __version__
from harness.errors import HarnessError
from harness.fileio import read_json, write_json_atomic
from harness.metrics import Scores

SCHEMA = 1
RECORD_FIELDS = ("model", "engine", "precision", "attack", "params", "n_images", "pixel_accuracy",
                 "mean_iou", "per_class_iou", "queries", "seconds")


def make_record(*, model: str, engine: str, precision: str, attack: str, params: dict[str, Any],
                n_images: int, scores: Scores, queries: int = 0, seconds: float = 0.0,
                **extra: Any) -> dict[str, Any]:
    """One result record; ``extra`` carries optional fields such as source_model, source_engine."""
    record = {"model": model, "engine": engine, "precision": precision, "attack": attack,
              "params": params, "n_images": n_images, "pixel_accuracy": scores.pixel_accuracy,
              "mean_iou": scores.mean_iou, "per_class_iou": scores.per_class_iou,
              "queries": queries, "seconds": round(seconds, 4)}
    record.update(extra)
    return record


def environment() -> dict[str, Any]:
    import numpy
    import torch

    env = {"python": platform.python_version(), "platform": platform.platform(),
           "machine": platform.machine(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
           "numpy": numpy.__version__, "cuda": torch.cuda.is_available()}
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return env


def write_results(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Write ``records`` as one results.json document, atomically."""
    doc = {"schema": SCHEMA, "harness_version": __version__,
           "created": datetime.now(UTC).isoformat(timespec="seconds"),
           "environment": environment(), "results": records}
    write_json_atomic(path, doc)


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a results.json; a missing, corrupt or foreign file is a HarnessError."""
    doc = read_json(path, "results file ")
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("results"), list):
        raise HarnessError(f"results file {path} is not a harness results document of schema {SCHEMA}")
    for i, record in enumerate(doc["results"]):
        missing = [k for k in RECORD_FIELDS if not isinstance(record, dict) or k not in record]
        if missing:
            raise HarnessError(f"results file {path}: record {i} lacks {', '.join(missing)}")
    return doc["results"]
