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
from reports import schema

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
           "numpy": numpy.__version__, "cuda": torch.cuda.is_available(),
           "threads": torch.get_num_threads()}  # float sums, hence the numbers, depend on it
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
    """The records of a results.json; a missing, corrupt, foreign or invalid file is a HarnessError."""
    return validate_results(read_json(path, "results file "), f"results file {path}")


def validate_results(doc: Any, where: str) -> list[dict[str, Any]]:
    """The records of a results document, after checking it against the schema (one line per fault).

    The document is an object with ``schema`` the integer ``SCHEMA`` (not ``true``, not ``1.0``) and ``results``
    a list of records, each passing :func:`validate_record`; ``harness_version`` and ``created`` are strings and
    ``environment`` an object when present.
    """
    if not isinstance(doc, dict) or type(doc.get("schema")) is not int or doc["schema"] != SCHEMA \
            or not isinstance(doc.get("results"), list):
        raise HarnessError(f"{where} is not a harness results document of schema {SCHEMA}")
    for name in ("harness_version", "created"):
        if name in doc:
            schema.string(doc[name], f"{where}: {name}")
    if "environment" in doc:
        schema.mapping(doc["environment"], f"{where}: environment")
    return [validate_record(record, f"{where}: record {i}") for i, record in enumerate(doc["results"])]


def validate_record(record: Any, where: str) -> dict[str, Any]:
    """``record`` when it is a record of the schema; a HarnessError naming ``where`` and the field otherwise.

    Required: RECORD_FIELDS, with model/engine/precision/attack non-empty strings; ``params`` an object of
    JSON scalars (known names typed, see ``PARAM_CHECKS``); ``n_images`` an integer >= 1;
    ``pixel_accuracy``/``mean_iou`` fractions in [0, 1]; ``per_class_iou`` a non-empty list of fractions or
    null (a class absent from the images); ``queries``/``seconds`` finite numbers >= 0. Optional fields, when
    present: ``size``/``source_model``/``source_engine`` strings or null, ``experiments`` a list of strings,
    ``engine_seconds`` a finite number >= 0. Other fields are kept as they are.
    """
    record = schema.mapping(record, where)
    missing = [k for k in RECORD_FIELDS if k not in record]
    if missing:
        raise HarnessError(f"{where} lacks {', '.join(missing)}")
    for name in ("model", "engine", "precision", "attack"):
        schema.string(record[name], f"{where}: {name}")
    for name, value in schema.mapping(record["params"], f"{where}: params").items():
        PARAM_CHECKS.get(name, schema.scalar)(value, f"{where}: params.{name}")
    schema.integer(record["n_images"], f"{where}: n_images", minimum=1)
    for name in ("pixel_accuracy", "mean_iou"):
        schema.fraction(record[name], f"{where}: {name}")
    schema.items(record["per_class_iou"], f"{where}: per_class_iou", schema.optional(schema.fraction), empty=False)
    for name in ("queries", "seconds"):
        schema.number(record[name], f"{where}: {name}", minimum=0)
    for name in OPTIONAL_STRINGS:
        schema.optional(schema.string)(record.get(name), f"{where}: {name}")
    if "experiments" in record:
        schema.items(record["experiments"], f"{where}: experiments", schema.string)
    if "engine_seconds" in record:
        schema.number(record["engine_seconds"], f"{where}: engine_seconds", minimum=0)
    return record


def _positive(value: Any, where: str) -> float:
    return schema.number(value, where, positive=True)


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        schema.fail(where, "true or false", value)
    return value


OPTIONAL_STRINGS = ("size", "source_model", "source_engine", "device", "weights_sha256")

# The attack parameters the harness writes; any other name must be a JSON scalar.
PARAM_CHECKS = {"eps": _positive, "alpha": schema.non_negative, "decay": schema.non_negative, "p_init": _positive,
                "steps": schema.count, "queries": schema.count, "n_queries": schema.count, "seed": schema.integer,
                "curve_every": schema.integer, "init": schema.string, "loss": schema.string,
                "random_start": _boolean}
