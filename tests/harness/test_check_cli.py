"""``python -m harness check``: the regression gate on real results.json files written by write_results."""

import json
import re
import subprocess
import sys

import pytest

from harness.cli import main
from harness.metrics import Scores
from reports.results import make_record, write_results


def record(attack="none", params=None, pa=0.90, miou=0.70, n=20, engine="torch", precision="fp32"):
    return make_record(model="fcn8s-vgg16", engine=engine, precision=precision, attack=attack, params=params or {},
                       n_images=n, scores=Scores(pa, miou, [miou], 1000), size="reduced")


def suite(drop=0.0):
    """Clean and PGD on torch, clean and Square on ort int8; ``drop`` lowers PGD's pixel accuracy."""
    return [record(), record("pgd", {"eps": 8, "steps": 10, "seed": 0}, pa=0.30 - drop, miou=0.15),
            record(engine="ort", precision="int8", pa=0.89, miou=0.69),
            record("square", {"eps": 8, "n_queries": 100}, engine="ort", precision="int8", n=8, pa=0.6, miou=0.4)]


@pytest.fixture
def files(tmp_path):
    """A baseline.json and a results.json of the same run, in ``tmp_path``."""
    base, results = tmp_path / "baseline.json", tmp_path / "results.json"
    write_results(base, suite())
    write_results(results, suite())
    return base, results


def check(base, results, *args):
    return main(["check", "--baseline", str(base), "--results", str(results), *args])


def test_identical_results_pass(files, capsys):
    assert check(*files) == 0
    out = capsys.readouterr().out
    assert "check passed: 4 record(s) within 1 point(s)" in out and "REGRESSION" not in out


def test_one_record_dropping_beyond_tolerance_fails_with_exit_1(files, capsys):
    base, results = files
    write_results(results, suite(drop=0.02))
    assert check(base, results) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "REGRESSION" in line)
    assert "pgd eps=8" in row and "30.00" in row and "28.00" in row and "-2.00" in row
    assert "check FAILED: 1 of 4 record(s)" in out


def test_a_drop_within_tolerance_passes(files, capsys):
    base, results = files
    write_results(results, suite(drop=0.02))
    assert check(base, results, "--tolerance", "2.5") == 0
    assert check(base, results, "--attack-tolerance", "pgd=2.5") == 0
    assert check(base, results, "--attack-tolerance", "square=2.5") == 1


def test_results_default_to_results_json_in_the_current_directory(files, monkeypatch, capsys):
    base, _ = files
    monkeypatch.chdir(base.parent)
    assert main(["check", "--baseline", "baseline.json"]) == 0


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def set_schema(path):
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "schema": 2}))


@pytest.mark.parametrize("which, damage, message", [
    ("results", lambda p: p.unlink(), "results file .*results.json does not exist"),
    ("baseline", lambda p: p.unlink(), "baseline: results file .*baseline.json does not exist"),
    ("results", truncate, "results.json is not valid JSON"),
    ("baseline", truncate, "baseline: .* is not valid JSON"),
    ("results", set_schema, "not a harness results document of schema 1"),
    ("baseline", set_schema, "baseline: .*not a harness results document of schema 1"),
    ("results", lambda p: write_results(p, suite()[:-1]), r"1 baseline record\(s\) missing .*square"),
    ("results", lambda p: write_results(p, suite() + [record("fgsm", {"eps": 8})]), r"1 record\(s\) not in the base"),
    ("results", lambda p: write_results(p, suite() + [record()]), "two records have the key"),
    ("baseline", lambda p: write_results(p, []), "has no records"),
])
def test_inputs_that_cannot_be_compared_exit_2(files, capsys, which, damage, message):
    base, results = files
    damage(base if which == "baseline" else results)
    assert check(base, results) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error: ")
    assert re.search(message, err), err


def test_new_records_pass_with_allow_new(files, capsys):
    base, results = files
    write_results(results, suite() + [record("fgsm", {"eps": 8})])
    assert check(base, results, "--allow-new") == 0
    out = capsys.readouterr().out
    assert "NEW" in out and "1 new, not checked" in out


def test_a_negative_tolerance_is_a_usage_error(files, capsys):
    assert check(*files, "--tolerance", "-1") == 2
    err = capsys.readouterr().err
    assert "argument --tolerance" in err and len(err.strip().splitlines()) == 1


def test_update_baseline_writes_the_results_atomically_and_then_passes(files, capsys):
    base, results = files
    write_results(results, suite(drop=0.05))
    assert check(base, results, "--update-baseline") == 0
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "check FAILED" in out and f"wrote {base}" in out
    assert base.read_bytes() == results.read_bytes()
    assert sorted(p.name for p in base.parent.iterdir()) == ["baseline.json", "results.json"]  # no temp file left
    assert check(base, results) == 0


def test_update_baseline_starts_a_missing_baseline_but_keeps_a_corrupt_one(tmp_path, capsys):
    base, results = tmp_path / "ci" / "baseline.json", tmp_path / "results.json"
    write_results(results, suite())
    assert check(base, results, "--update-baseline") == 0
    assert base.read_bytes() == results.read_bytes()
    truncate(base)
    corrupt = base.read_bytes()
    assert check(base, results, "--update-baseline") == 2
    assert "remove it to start a new baseline" in capsys.readouterr().err
    assert base.read_bytes() == corrupt


def test_update_baseline_never_adopts_invalid_results(files, capsys):
    base, results = files
    before = base.read_bytes()
    write_results(results, suite() + [record()])
    assert check(base, results, "--update-baseline") == 2
    assert base.read_bytes() == before


def test_as_a_process_an_input_error_is_one_line_after_the_table(files):
    """The real entry point: the table on stdout, one error line on stderr, no traceback, exit 2."""
    base, results = files
    write_results(results, suite()[:-1])
    run = subprocess.run([sys.executable, "-m", "harness", "check", "--baseline", str(base), "--results",
                          str(results)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert run.stderr.startswith("error: results do not cover the baseline: 1 baseline record(s) missing")
    assert "MISSING" in run.stdout and "square eps=8" in run.stdout
