"""Read a suite run directory back, checking every file against what harness/suite/runner.py writes.

``load_run(DIR)`` reads ``results.json`` (reports.results.validate_results, as ``check`` does),
``suite.json`` (with the user's ``targets`` and what was ``skipped`` on them, if any), and the optional
``data/pgd_sweep.json``, ``data/square_curves.json``, ``data/examples.json`` + ``data/examples.npz``.
Anything missing, unreadable, of the wrong type or out of range is one HarnessError naming the file and
the field; nothing is rendered from a file that failed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.attacks.blackbox_attacks import BLACKBOX_ATTACKS
from harness.data.base import IGNORE_INDEX, is_class_name
from harness.errors import HarnessError
from harness.fileio import read_json
from harness.npzfile import load_arrays
from harness.suite.config import CheckSpec
from reports import schema
from reports.results import read_results, validate_record
from reports.tables import worst_case_wins

EXAMPLE_ARRAYS = ("clean", "adversarial", "labels", "clean_pred", "adversarial_pred")
MAX_EXAMPLES = 64  # Figure 2 draws every example: one row of five panels each
MAX_EXAMPLE_SIDE = 2048
MAX_EXAMPLE_BYTES = 1 << 30  # uncompressed, all arrays together
MAX_CLASSES = 255  # class maps are uint8 and 255 is the ignore label
EPS_SLACK = 1e-5  # float32 rounding of clean +- eps/255

# Names that become part of a figure's file name: no path separators, no "..", a bounded length.
_NAME = re.compile(r"[A-Za-z0-9_+\-][A-Za-z0-9._+\-]{0,99}")


@dataclass
class RecordedRun:
    """Everything a suite run recorded; the data of an experiment that was not run is None."""

    directory: Path
    records: list[dict[str, Any]]
    suite: dict[str, Any]
    sweep: dict[str, Any] | None
    curves: list[dict[str, Any]] | None
    examples: dict[str, np.ndarray] | None
    examples_meta: dict[str, Any] | None


def load_run(directory: str | os.PathLike) -> RecordedRun:
    """The recorded run in ``directory``; HarnessError when it is not a readable, valid suite run directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise HarnessError(f"run directory {directory} does not exist")
    if not (directory / "suite.json").is_file():
        raise HarnessError(f"{directory} is not a suite run directory (no suite.json); run python -m harness suite "
                           f"--out {directory}")
    records = read_results(directory / "results.json")
    _check_experiment_fields(records, f"results file {directory / 'results.json'}")
    suite = read_suite(directory / "suite.json")
    data = directory / "data"
    sweep = _optional(data / "pgd_sweep.json", validate_sweep)
    curves = _optional(data / "square_curves.json", validate_curves)
    meta = _optional(data / "examples.json", validate_examples_meta)
    examples = None if meta is None else read_examples(data / "examples.npz", len(meta["class_names"]),
                                                       float(meta["eps"]))
    return RecordedRun(directory, records, suite, sweep, None if curves is None else curves["curves"], examples, meta)


def read_suite(path: str | os.PathLike) -> dict[str, Any]:
    """A run's suite.json, validated by :func:`validate_suite`."""
    doc = read_json(path)
    try:
        return validate_suite(doc, str(path))
    except HarnessError as e:
        raise HarnessError(f"{e}; re-run the suite to rewrite it") from None


def read_suite_check(path: str | os.PathLike) -> CheckSpec:
    """The ``[check]`` tolerances of the suite recorded in ``path`` (a run's suite.json); the defaults when there
    is no such file (results not written by a suite); HarnessError when it is there but unreadable or invalid."""
    if not Path(path).is_file():
        return CheckSpec()
    check = read_suite(path)["suite"].get("check", {})
    return CheckSpec(float(check.get("tolerance", CheckSpec.tolerance)),
                     {k: float(v) for k, v in check.get("attack_tolerance", {}).items()})


def validate_suite(doc: Any, where: str) -> dict[str, Any]:
    """``doc`` when it has the shape of a suite.json; every field the report reads is typed and in range."""
    doc = schema.mapping(doc, where)
    config = schema.mapping(schema.field(doc, "suite", where), f"{where}: suite")
    _maybe(config, "name", f"{where}: suite", schema.string)
    _maybe(config, "source", f"{where}: suite", _path)
    if "data" in config:
        data = schema.mapping(config["data"], f"{where}: suite.data")
        _maybe(data, "source", f"{where}: suite.data", _path)
        _maybe(data, "image_size", f"{where}: suite.data", schema.optional(_image_size))
        _maybe(data, "seed", f"{where}: suite.data", schema.integer)
    if "check" in config:
        check = schema.mapping(config["check"], f"{where}: suite.check")
        _maybe(check, "tolerance", f"{where}: suite.check", schema.non_negative)
        _maybe(check, "attack_tolerance", f"{where}: suite.check",
               lambda v, w: schema.values(v, w, schema.non_negative))
    for name in ("harness_version", "created"):
        _maybe(doc, name, where, schema.string)
    _maybe(doc, "seconds", where, schema.non_negative)
    _maybe(doc, "phases", where, lambda v, w: schema.values(v, w, schema.non_negative))
    _maybe(doc, "trained", where, lambda v, w: schema.items(v, w, schema.string))
    _maybe(doc, "models", where, lambda v, w: schema.values(v, w, _model_entry))
    _maybe(doc, "targets", where, lambda v, w: schema.values(v, w, _target_entry))
    _maybe(doc, "skipped", where, lambda v, w: schema.items(v, w, _skip_entry))
    return doc


def _target_entry(value: Any, where: str) -> dict[str, Any]:
    """A user's target as the run described it: ``kind``, ``sha256`` strings, ``card`` an object."""
    entry = schema.mapping(value, where)
    for name in ("kind", "sha256"):
        schema.string(schema.field(entry, name, where), f"{where}.{name}")
    _maybe(entry, "path", where, schema.optional(_path))
    _maybe(entry, "card", where, schema.mapping)
    return entry


def _skip_entry(value: Any, where: str) -> dict[str, Any]:
    """What did not run on a target: ``model``, ``experiment``, ``reason`` strings (``engine``, ``precision``)."""
    entry = schema.mapping(value, where)
    for name in ("model", "experiment", "reason"):
        schema.string(schema.field(entry, name, where), f"{where}.{name}", max_length=2000)
    for name in ("engine", "precision"):
        _maybe(entry, name, where, schema.string)
    return entry


def _model_entry(value: Any, where: str) -> dict[str, Any]:
    entry = schema.mapping(value, where)
    for name in ("size", "sha256"):
        _maybe(entry, name, where, schema.optional(schema.string))
    _maybe(entry, "checkpoint", where, schema.optional(_path))
    train = _maybe(entry, "train", where, schema.optional(schema.mapping))
    if train:
        _maybe(train, "epochs", f"{where}.train", schema.count)
        _maybe(train, "lr", f"{where}.train", schema.non_negative)
        _maybe(train, "seconds", f"{where}.train", schema.non_negative)
        adversarial = _maybe(train, "adversarial", f"{where}.train", schema.optional(schema.mapping))
        if adversarial:  # the Models table names the defence from these two
            schema.count(schema.field(adversarial, "steps", f"{where}.train.adversarial"),
                         f"{where}.train.adversarial.steps")
            schema.non_negative(schema.field(adversarial, "eps", f"{where}.train.adversarial"),
                                f"{where}.train.adversarial.eps")
    metrics = _maybe(entry, "val_metrics", where, schema.optional(schema.mapping))
    if metrics:
        for name in ("pixel_accuracy", "mean_iou"):
            _maybe(metrics, name, f"{where}.val_metrics", schema.fraction)
    return entry


def validate_sweep(doc: Any, where: str) -> dict[str, Any]:
    """data/pgd_sweep.json: ``eps`` > 0, ``n_images`` >= 1, ``records`` valid records; every PGD record has its
    ``steps`` (Figure 3's x axis)."""
    doc = schema.mapping(doc, where)
    schema.number(schema.field(doc, "eps", where), f"{where}: eps", positive=True)
    schema.count(schema.field(doc, "n_images", where), f"{where}: n_images")
    records = schema.items(schema.field(doc, "records", where), f"{where}: records", validate_record)
    for i, record in enumerate(records):
        if record["attack"] == "pgd" and "steps" not in record["params"]:
            raise HarnessError(f"{where}: records[{i}]: a PGD record lacks params.steps")
    return doc


def validate_curves(doc: Any, where: str) -> dict[str, Any]:
    """data/square_curves.json: ``curves``, one document per model and engine, each with its curves' points."""
    doc = schema.mapping(doc, where)
    schema.items(schema.field(doc, "curves", where), f"{where}: curves", _curve_document)
    return doc


def _curve_document(value: Any, w: str) -> dict[str, Any]:
    doc = schema.mapping(value, w)
    _name(schema.field(doc, "model", w), f"{w}.model")
    engine = schema.mapping(schema.field(doc, "engine", w), f"{w}.engine")
    for name in ("name", "precision"):
        _name(schema.field(engine, name, f"{w}.engine"), f"{w}.engine.{name}")
    schema.count(schema.field(doc, "n_images", w), f"{w}.n_images")
    schema.optional(schema.fraction)(doc.get("clean_pixel_accuracy"), f"{w}.clean_pixel_accuracy")
    schema.items(schema.field(doc, "curves", w), f"{w}.curves", _curve)
    return doc


def _curve(value: Any, w: str) -> dict[str, Any]:
    curve = schema.mapping(value, w)
    params = schema.mapping(schema.field(curve, "params", w), f"{w}.params")
    schema.number(schema.field(params, "eps", f"{w}.params"), f"{w}.params.eps", positive=True)
    schema.string(schema.field(params, "init", f"{w}.params"), f"{w}.params.init")
    schema.items(schema.field(curve, "points", w), f"{w}.points", _point, empty=False)
    return curve


def _point(value: Any, w: str) -> dict[str, Any]:
    point = schema.mapping(value, w)
    schema.number(schema.field(point, "queries", w), f"{w}.queries", minimum=0)
    schema.fraction(schema.field(point, "pixel_accuracy", w), f"{w}.pixel_accuracy")
    schema.number(schema.field(point, "mean_loss", w), f"{w}.mean_loss")
    return point


def validate_examples_meta(doc: Any, where: str) -> dict[str, Any]:
    """data/examples.json: ``model``, ``label``, ``eps`` in (0, 255], ``class_names`` non-empty strings."""
    doc = schema.mapping(doc, where)
    for name in ("model", "label"):
        schema.string(schema.field(doc, name, where), f"{where}: {name}")
    schema.number(schema.field(doc, "eps", where), f"{where}: eps", positive=True, maximum=255)
    names = schema.items(schema.field(doc, "class_names", where), f"{where}: class_names", schema.string, empty=False)
    if len(names) > MAX_CLASSES:
        raise HarnessError(f"{where}: class_names holds {len(names)} names; at most {MAX_CLASSES} (uint8 maps)")
    odd = next((n for n in names if not is_class_name(n)), None)
    if odd is not None:  # the names are drawn in the figure's legend and written into the report
        raise HarnessError(f"{where}: class_names holds {schema.describe(odd)}, which has control characters")
    return doc


def read_examples(path: Path, num_classes: int, eps: float) -> dict[str, np.ndarray]:
    """The arrays of data/examples.npz: ``clean``/``adversarial`` float32 (N, 3, H, W) in [0, 1] and within
    ``eps``/255 of each other, ``labels`` uint8 (N, H, W) (classes or 255), predictions integer (N, H, W) of
    ``num_classes`` classes; 1 <= N <= MAX_EXAMPLES. HarnessError (one line) otherwise."""
    arrays = load_arrays(path, EXAMPLE_ARRAYS, MAX_EXAMPLE_BYTES, hint="; re-run the suite to rewrite it")
    _check_examples(arrays, f"{path}", num_classes, eps)
    return arrays


def _check_examples(arrays: dict[str, np.ndarray], where: str, num_classes: int, eps: float) -> None:
    clean, adversarial = arrays["clean"], arrays["adversarial"]
    if clean.dtype != np.float32 or clean.ndim != 4 or clean.shape[1] != 3 or not 1 <= len(clean) <= MAX_EXAMPLES \
            or not all(1 <= side <= MAX_EXAMPLE_SIDE for side in clean.shape[2:]):
        raise HarnessError(f"{where}: clean must be float32 (N, 3, H, W) with 1 <= N <= {MAX_EXAMPLES} and sides "
                           f"<= {MAX_EXAMPLE_SIDE}, got {clean.dtype} {clean.shape}")
    maps = (len(clean), *clean.shape[2:])
    if adversarial.dtype != np.float32 or adversarial.shape != clean.shape:
        raise HarnessError(f"{where}: adversarial must be float32 {clean.shape} like clean, got "
                           f"{adversarial.dtype} {adversarial.shape}")
    for name in ("clean", "adversarial"):
        if not np.isfinite(arrays[name]).all() or arrays[name].min() < 0 or arrays[name].max() > 1:
            raise HarnessError(f"{where}: {name} images must be finite values in [0, 1]")
    if float(np.abs(adversarial - clean).max()) > eps / 255 + EPS_SLACK:
        raise HarnessError(f"{where}: adversarial images lie outside the eps {eps:g}/255 ball of the clean images")
    for name in ("labels", "clean_pred", "adversarial_pred"):
        array = arrays[name]
        if array.dtype.kind not in "iu" or array.shape != maps:
            raise HarnessError(f"{where}: {name} must be an integer array {maps}, got {array.dtype} {array.shape}")
        valid = (array >= 0) & (array < num_classes)
        if name == "labels":
            valid |= array == IGNORE_INDEX
        if not valid.all():
            raise HarnessError(f"{where}: {name} holds values outside the {num_classes} classes"
                               + (f" and the ignore label {IGNORE_INDEX}" if name == "labels" else ""))


def _check_experiment_fields(records: list[dict[str, Any]], where: str) -> None:
    """What the report's tables read beyond the schema: a Square record of the ``square`` experiment has its
    ``init`` and ``queries`` parameters; a worst case's ``worst_case`` win counts are well formed."""
    for i, record in enumerate(records):
        worst_case_wins(record, f"{where}: record {i}")
        if "square" in record.get("experiments", ()) and record["attack"] in BLACKBOX_ATTACKS:
            for name in ("init", "queries"):
                if name not in record["params"]:
                    what = "Square" if record["attack"] == "square" else "hard-label"
                    raise HarnessError(f"{where}: record {i}: a {what} record lacks params.{name}")


def _optional(path: Path, validate: Any) -> Any:
    """The validated JSON document in ``path``; None when there is no such file."""
    if not path.exists():
        return None
    try:
        return validate(read_json(path), str(path))
    except HarnessError as e:
        raise HarnessError(f"{e}; re-run the suite to rewrite it") from None


def _maybe(doc: dict[str, Any], key: str, where: str, check: Any) -> Any:
    """``check(doc[key], f"{where}.{key}")`` when ``doc`` has ``key``; None otherwise."""
    return check(doc[key], f"{where}.{key}") if key in doc else None


def _path(value: Any, where: str) -> str:
    return schema.string(value, where, max_length=4096)


def _image_size(value: Any, where: str) -> int | str:
    """A suite's image size: a side (a count) or "HEIGHTxWIDTH" (a non-square size, as the suite file writes it)."""
    if isinstance(value, str):
        if not re.fullmatch(r"[1-9][0-9]{0,5}x[1-9][0-9]{0,5}", value):
            schema.fail(where, "a side in pixels or \"HEIGHTxWIDTH\"", value)
        return value
    return schema.count(value, where)


def _name(value: Any, where: str) -> str:
    """A string that can be part of a file name (figure names hold the model and the engine)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        schema.fail(where, "a name of letters, digits and ._+- (at most 100)", value)
    return value
