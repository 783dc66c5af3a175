"""Property-based tests of the results and run-directory readers through the CLI (``check``, ``report``).

Random JSON documents, random values in the fields of valid records and suite files, and random truncations of
valid files: the command never raises; it exits 0/1 for a valid document and 2 with one ``error:`` line on stderr
otherwise, and ``report`` writes nothing when it fails. (Hypothesis does not mix with function-scoped fixtures,
so each example writes its own temporary directory and output is captured with contextlib.)
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import main
from harness.fileio import write_json_atomic
from reports.results import write_results

from .conftest import run_records, suite_document, write_run  # noqa: F401 (conftest is a module here)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Unbounded integers (JSON reads 10**400), every float (NaN, inf, 1e308), and text with rich markup and TeX.
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                    st.sampled_from(["[/]", "[bold]x", "$\\frac$", "../x", "", "a/b", "\x00", "é" * 300]))
json_values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)), max_leaves=12)


def cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_one_line_or_pass(code: int, err: str, allowed: tuple[int, ...]) -> None:
    assert code in allowed, (code, err)
    assert "Traceback" not in err
    if code == 2:
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


@contextlib.contextmanager
def scratch():
    path = Path(tempfile.mkdtemp(prefix="harness-prop-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def check(directory: Path, results_bytes: bytes) -> tuple[int, str, str]:
    baseline = directory / "baseline.json"
    write_results(baseline, run_records())
    results = directory / "results.json"
    results.write_bytes(results_bytes)
    return cli(["check", "--baseline", str(baseline), "--results", str(results), "--allow-new"])


@SETTINGS
@given(doc=json_values)
def test_check_on_any_json_document_exits_2_with_one_line(doc):
    with scratch() as d:
        code, _, err = check(d, json.dumps(doc).encode())
        assert_one_line_or_pass(code, err, (2,))


@SETTINGS
@given(index=st.integers(0, len(run_records()) - 1),
       field=st.sampled_from(["model", "engine", "precision", "attack", "params", "n_images", "pixel_accuracy",
                              "mean_iou", "per_class_iou", "queries", "seconds", "size", "source_model",
                              "experiments", "engine_seconds"]),
       value=json_values, schema=st.one_of(st.just(1), json_values))
def test_check_with_random_values_in_a_record_never_raises(index, field, value, schema):
    records = run_records()
    records[index][field] = value
    with scratch() as d:
        doc = {"schema": schema, "results": records}
        code, _, err = check(d, json.dumps(doc).encode())
        assert_one_line_or_pass(code, err, (0, 1, 2))
        if code != 2:  # accepted: then it really is a record of the schema
            assert schema == 1 and not isinstance(schema, bool)


@SETTINGS
@given(fraction=st.floats(0, 1, exclude_max=True), junk=st.binary(max_size=8))
def test_check_on_a_truncated_results_file_exits_2(fraction, junk):
    with scratch() as d:
        write_results(d / "full.json", run_records())
        data = (d / "full.json").read_bytes()
        code, _, err = check(d, data[: int(fraction * len(data))] + junk)
        assert_one_line_or_pass(code, err, (0, 1, 2))


REPORT_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RUN_FILES = ["results.json", "suite.json", "data/pgd_sweep.json", "data/square_curves.json", "data/examples.json",
             "data/examples.npz"]


def report(run: Path) -> tuple[int, str, str]:
    code, out, err = cli(["report", str(run)])
    if code == 2:
        assert not (run / "report").exists()
    return code, out, err


@REPORT_SETTINGS
@given(name=st.sampled_from(RUN_FILES), fraction=st.floats(0, 1, exclude_max=True), junk=st.binary(max_size=8))
def test_report_on_a_run_with_a_truncated_file_exits_2(name, fraction, junk):
    with scratch() as d:
        run = write_run(d / "run")
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: int(fraction * len(data))] + junk)
        code, _, err = report(run)
        assert_one_line_or_pass(code, err, (0, 2))


@REPORT_SETTINGS
@given(name=st.sampled_from(RUN_FILES[1:5]), doc=json_values)
def test_report_on_a_run_with_any_json_in_a_file_never_raises(name, doc):
    with scratch() as d:
        run = write_run(d / "run")
        (run / name).write_text(json.dumps(doc))
        code, _, err = report(run)
        assert_one_line_or_pass(code, err, (0, 2))


SUITE_PATHS = [("seconds",), ("phases",), ("trained",), ("models",), ("suite",), ("suite", "name"),
               ("suite", "data"), ("suite", "data", "image_size"), ("suite", "check"),
               ("suite", "check", "tolerance"), ("suite", "check", "attack_tolerance"),
               ("models", "fcn8s-vgg16", "train"), ("models", "fcn8s-vgg16", "train", "lr"),
               ("models", "fcn8s-vgg16", "val_metrics", "mean_iou"), ("harness_version",)]


@REPORT_SETTINGS
@given(path=st.sampled_from(SUITE_PATHS), value=json_values)
def test_report_with_random_values_in_suite_json_never_raises(path, value):
    doc = suite_document()
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with scratch() as d:
        run = write_run(d / "run")
        write_json_atomic(run / "suite.json", doc)
        code, _, err = report(run)
        assert_one_line_or_pass(code, err, (0, 2))


ARRAY_DTYPES = [np.float32, np.float64, np.uint8, np.int64, np.int8, np.bool_, np.float16]


@REPORT_SETTINGS
@given(name=st.sampled_from(["clean", "adversarial", "labels", "clean_pred", "adversarial_pred"]),
       dtype=st.sampled_from(ARRAY_DTYPES), shape=st.lists(st.integers(0, 5), min_size=0, max_size=5),
       fill=st.one_of(st.floats(), st.integers(-300, 300)))
def test_report_with_any_array_in_examples_npz_never_raises(name, dtype, shape, fill):
    with scratch() as d:
        run = write_run(d / "run")
        path = run / "data" / "examples.npz"
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        with np.errstate(all="ignore"):
            arrays[name] = np.full(shape, fill).astype(dtype)
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)
        code, _, err = report(run)
        assert_one_line_or_pass(code, err, (0, 2))
