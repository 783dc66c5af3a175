"""Every output option of every command, against every class of path that cannot be written: one line on stderr,
exit code 2, and the check comes before the work (nothing is created in the cache, no model is needed)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reports.results import write_results

MODEL = ["--model", "fcn8s-vgg16"]

# (command line before the option, option, "file" or "dir"); the commands would need a trained model or hours
# of work, so an error about the output proves the check ran first.
OUTPUTS = [
    (["eval", *MODEL], "--json", "file"),
    (["attack", *MODEL, "--attack", "fgsm"], "--json", "file"),
    (["attack", *MODEL, "--attack", "fgsm"], "--save-adv", "dir"),
    (["whitebox"], "--json", "file"),
    (["sweep"], "--json", "file"),
    (["sweep"], "--png", "file"),
    (["blackbox", *MODEL], "--json", "file"),
    (["blackbox", *MODEL], "--curve", "file"),
    (["transfer", "--engines", "torch"], "--json", "file"),
    (["export", *MODEL], "--json", "file"),
    (["export", *MODEL], "--out", "dir"),
    (["train", *MODEL], "--out", "file"),
    (["suite"], "--out", "dir"),
    (["check", "--results", "results.json", "--update-baseline"], "--baseline", "file"),
]

COMMON_CASES = ["parent is a file", "missing parent under a file", "unwritable place", "name too long"]
CASES = {"file": [*COMMON_CASES, "target is a directory", "device"], "dir": [*COMMON_CASES, "target is a file"]}
PARAMS = [pytest.param(before, option, kind, case, id=f"{before[0]} {option}: {case}")
          for before, option, kind in OUTPUTS for case in CASES[kind]]


def _bad_path(root: Path, case: str, kind: str) -> str:
    """A path of failure class ``case`` for an output of ``kind``."""
    (root / "afile.json").write_text("keep")
    (root / "adir.json").mkdir(exist_ok=True)
    return {
        "parent is a file": str(root / "afile.json" / "out.json"),
        "missing parent under a file": str(root / "afile.json" / "sub" / "out.json"),
        "target is a directory": str(root / "adir.json"),
        "target is a file": str(root / "afile.json"),
        "unwritable place": "/proc/harness-test/out.json",
        "name too long": str(root / ("x" * 300 + ".json")),
        "device": "/dev/null",
    }[case]


@pytest.mark.parametrize("before, option, kind, case", PARAMS)
def test_an_output_that_cannot_be_written_is_one_line_before_any_work(run_cli, tmp_path, monkeypatch, before,
                                                                       option, kind, case):
    path = _bad_path(tmp_path, case, kind)
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    start = time.perf_counter()
    code, out, err = run_cli(["--cache-dir", str(cache), *before, option, path])
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert option in err
    assert not cache.exists()  # no data generated, no model trained, nothing exported
    assert time.perf_counter() - start < 10
    assert (tmp_path / "afile.json").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.json", "afile.json"]


@pytest.mark.parametrize("case", ["parent is a file", "target is a file", "unwritable place", "name too long"])
def test_a_cache_dir_that_cannot_be_written_is_one_line_before_any_work(run_cli, tmp_path, case):
    path = _bad_path(tmp_path, case, "dir")
    code, _, err = run_cli(["--cache-dir", path, "eval", *MODEL])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--cache-dir" in err


def test_a_cache_whose_subdirectory_is_a_file_is_refused(run_cli, tmp_path):
    (tmp_path / "data").write_text("")
    code, _, err = run_cli(["--cache-dir", str(tmp_path), "eval", *MODEL])
    assert code == 2 and "data is a file, not a directory" in err


def _run_dir(root: Path) -> Path:
    """The smallest run directory ``report`` reads: real files, as a suite run writes them."""
    run = root / "run"
    write_results(run / "results.json", [])
    (run / "suite.json").write_text('{"suite": {}}')
    return run


def test_report_into_a_run_dir_whose_report_is_a_file_is_one_line(run_cli, tmp_path):
    run = _run_dir(tmp_path)
    (run / "report").write_text("not a directory")
    code, _, err = run_cli(["report", str(run)])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "report is a file, not a directory" in err
    assert (run / "report").read_text() == "not a directory"


def test_a_suite_run_dir_whose_data_is_a_file_is_refused_before_training(run_cli, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "data").write_text("")
    code, _, err = run_cli(["--cache-dir", str(tmp_path / "cache"), "suite", "--out", str(out)])
    assert code == 2 and "data is a file, not a directory" in err and not (tmp_path / "cache").exists()


def test_a_suite_name_of_300_characters_is_refused(run_cli, tmp_path):
    config = tmp_path / "long.toml"
    config.write_text(f'name = "{"s" * 300}"\n[models]\nnames = ["fcn8s-vgg16"]\n')
    code, _, err = run_cli(["--cache-dir", str(tmp_path / "cache"), "suite", "--config", str(config)])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "at most 100 characters" in err


def test_two_outputs_naming_one_file_are_refused(run_cli, tmp_path):
    target = str(tmp_path / "a.json")
    code, _, err = run_cli(["--cache-dir", str(tmp_path / "cache"), "blackbox", *MODEL, "--json", target,
                            "--curve", target])
    assert code == 2 and "name the same file" in err

