"""``python -m harness suite`` end to end on a tiny suite, then ``report`` from the saved run with no model."""

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from reports.regression import record_key
from reports.results import read_results

TINY = """
name = "tiny"
batch_size = 4

[models]
names = ["fcn8s-vgg16", "fcn-resnet50"]
epochs = 1
n_train = 32

[deployment]
engines = ["torch", "ort"]
precisions = ["fp32"]

[whitebox]
columns = ["fgsm", "pgd-2"]
n_images = 4

[sweep]
models = ["fcn-resnet50"]
steps = [1, 2]
n_images = 4

[transfer]
attacks = ["pgd-2"]
n_images = 4

[square]
models = ["fcn-resnet50"]
queries = 6
n_images = 2
inits = ["vertical", "horizontal"]

[examples]
model = "fcn-resnet50"
attack = "pgd-2"
n_images = 2

[check]
tolerance = 0.5
attack_tolerance = { square = 3 }
"""

FIGURES = ("figure1_example.png", "figure2_examples.png", "figure3_pgd_sweep.png",
           "figure4_square_fcn-resnet50_ort_fp32.png")


@pytest.fixture(scope="module")
def tiny_run(run_suite_once):
    """The tiny suite run once from an empty cache of its own: (run directory, cache, suite file)."""
    return run_suite_once("suite", TINY)


@pytest.mark.slow
def test_the_suite_writes_results_data_and_a_report_with_every_figure(tiny_run):
    out, cache, _ = tiny_run
    records = read_results(out / "results.json")
    keys = [record_key(r) for r in records]
    assert len(keys) == len(set(keys))  # one record per key: the regression check can read it
    experiments = {e for r in records for e in r["experiments"]}
    assert experiments == {"table1", "sweep", "transfer", "square"}
    for r in records:
        if r["attack"] != "none":  # every adversarial number has its clean baseline
            assert any(c["attack"] == "none" and (c["model"], c["engine"], c["precision"], c["n_images"])
                       == (r["model"], r["engine"], r["precision"], r["n_images"]) for c in records), r
    assert len([r for r in records if r["attack"] == "square"]) == 2
    assert {"fcn8s-vgg16", "fcn-resnet50"} == {r["model"] for r in records if "table1" in r["experiments"]}
    suite = json.loads((out / "suite.json").read_text())
    assert suite["trained"] == ["fcn8s-vgg16", "fcn-resnet50"] and suite["suite"]["check"]["tolerance"] == 0.5
    for name in ("pgd_sweep.json", "square_curves.json", "examples.npz", "examples.json"):
        assert (out / "data" / name).is_file()
    report = (out / "report" / "report.md").read_text()
    for heading in ("## Table 1", "## Figures 1-2", "## Figure 3", "## Table 2", "## Deployment gap", "## Figure 4",
                    "## Regression gate", "--tolerance 0.5 --attack-tolerance square=3"):
        assert heading in report
    for figure in FIGURES:
        png = out / "report" / figure
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"({figure})" in report


@pytest.mark.slow
def test_a_second_run_reuses_checkpoints_examples_and_square_runs(tiny_run, tmp_path, monkeypatch):
    out, cache, config = tiny_run
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    assert main(["suite", "--config", str(config), "--out", str(tmp_path / "again")]) == 0
    first, again = read_results(out / "results.json"), read_results(tmp_path / "again" / "results.json")
    assert json.loads((tmp_path / "again" / "suite.json").read_text())["trained"] == []
    assert [r for r in again if r["attack"] != "none" and r.get("reused") is False] == []
    metrics = ("pixel_accuracy", "mean_iou", "per_class_iou")
    assert [[r[m] for m in metrics] for r in first] == [[r[m] for m in metrics] for r in again]


@pytest.mark.slow
def test_report_re_renders_a_saved_run_without_any_model(tiny_run, tmp_path, monkeypatch, capsys):
    out, _, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "report")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "empty-cache"))  # no checkpoint, no artifact
    assert main(["report", str(copy)]) == 0
    assert not (tmp_path / "empty-cache").exists()
    text = capsys.readouterr().out
    assert "Table 1" in text and "Table 2" in text and "Deployment gap" in text and "Square Attack" in text
    assert (copy / "report" / "report.md").read_text().replace(str(copy), str(out)) == \
        (out / "report" / "report.md").read_text()
    for figure in FIGURES:
        assert (copy / "report" / figure).stat().st_size > 10_000


@pytest.mark.slow
def test_check_takes_the_suite_tolerances_and_the_command_line_wins(tiny_run, tmp_path, capsys):
    out, _, _ = tiny_run
    results = json.loads((out / "results.json").read_text())
    table1 = next(r for r in results["results"] if r["attack"] == "pgd" and "table1" in r["experiments"])
    table1["pixel_accuracy"] = max(0.0, table1["pixel_accuracy"] - 0.008)  # 0.8 points: above 0.5, below 1
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(out / "suite.json", run / "suite.json")
    (run / "results.json").write_text(json.dumps(results))
    assert main(["check", "--baseline", str(out / "results.json"), "--results", str(run / "results.json")]) == 1
    assert "tolerance 0.5 pt" in capsys.readouterr().out
    assert main(["check", "--baseline", str(out / "results.json"), "--results", str(run / "results.json"),
                 "--tolerance", "1"]) == 0


def test_report_on_a_directory_that_is_not_a_run_is_one_line_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a suite run directory (no suite.json)" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nope")]) == 2
    (tmp_path / "suite.json").write_text("{}")
    (tmp_path / "results.json").write_text('{"schema": 1, "results": [')
    assert main(["report", str(tmp_path)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    assert not Path(tmp_path / "report").exists()
