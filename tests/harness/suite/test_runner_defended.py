"""The defended model end to end: a tiny suite trains it (1 epoch, few images) beside the undefended model, Table 1
has a row of its own, ``defended_eps`` gives its accuracy over eps, and the report and a second run read it back."""

import json
import shutil

import pytest

from harness.checkpoints import load_checkpoint
from harness.cli import main
from reports.regression import record_key
from reports.results import read_results

DEFENDED = "fcn-resnet50-adv-pgd2-eps4"
TINY = """
name = "tiny-defended"
batch_size = 2

[models]
names = ["fcn-resnet50"]
epochs = 1
n_train = 8
defended = { model = "fcn-resnet50", adversarial = "pgd-2", eps = 4, epochs = 1 }

[whitebox]
columns = ["fgsm", "pgd-2", "sea-2"]
n_images = 2
defended_eps = [4, 8]
defended_columns = ["pgd-2", "sea-2"]
"""


@pytest.fixture(scope="module")
def defended_run(run_suite_once):
    """The tiny suite run once from an empty cache of its own: (run directory, cache, suite file)."""
    return run_suite_once("defended", TINY)


@pytest.mark.slow
def test_the_defended_model_has_its_own_records_in_table1_and_over_eps(defended_run):
    out, _, _ = defended_run
    records = read_results(out / "results.json")
    keys = [record_key(r) for r in records]
    assert len(keys) == len(set(keys))
    table1 = [r for r in records if "table1" in r["experiments"]]
    assert {r["model"] for r in table1} == {"fcn-resnet50", DEFENDED}
    for model in ("fcn-resnet50", DEFENDED):  # the same columns in both rows
        assert sorted(r["attack"] for r in table1 if r["model"] == model) == ["fgsm", "none", "pgd", "sea-2"]
    assert all(r["params"].get("eps", 8.0) == 8.0 for r in table1)  # the curve's other radii stay out of Table 1
    curve = [r for r in records if "defended_eps" in r["experiments"]]
    assert {r["model"] for r in curve} == {DEFENDED}
    assert sorted((r["attack"], r["params"]["eps"]) for r in curve if r["attack"] != "none") == \
        [("pgd", 4.0), ("pgd", 8.0), ("sea-2", 4.0), ("sea-2", 8.0)]
    for r in curve:  # Table 1's radius is one record of both experiments
        assert ("table1" in r["experiments"]) == (r["params"].get("eps") in (None, 8.0))
    defended = [r for r in records if r["model"] == DEFENDED]
    assert all(r["adversarial_training"] == {"model": "fcn-resnet50", "attack": "pgd", "steps": 2, "eps": 4.0,
                                             "alpha": 5.0, "random_start": True, "epochs": 1} for r in defended)
    assert not any("adversarial_training" in r for r in records if r["model"] != DEFENDED)
    shas = {r["model"]: r["weights_sha256"] for r in table1}
    assert shas["fcn-resnet50"] != shas[DEFENDED]


@pytest.mark.slow
def test_the_defended_checkpoint_is_tagged_and_records_its_training(defended_run):
    out, cache, _ = defended_run
    suite = json.loads((out / "suite.json").read_text())
    assert suite["trained"] == ["fcn-resnet50", DEFENDED]
    entry = suite["models"][DEFENDED]
    assert "--adv-pgd2-eps4--suite-" in entry["checkpoint"] and entry["checkpoint"].startswith(str(cache))
    assert "adv" not in suite["models"]["fcn-resnet50"]["checkpoint"]
    _, meta = load_checkpoint(entry["checkpoint"])
    assert meta["model"] == "fcn-resnet50" and meta["train"]["adversarial"]["steps"] == 2
    assert meta["train"]["epochs"] == 1 and meta["train"]["n_images"] == 8


@pytest.mark.slow
def test_the_report_shows_the_defended_row_the_curve_and_the_training(defended_run, tmp_path, capsys):
    out, _, _ = defended_run
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Defended model: pixel accuracy (%) over eps" in text and DEFENDED in text
    report = (out / "report" / "report.md").read_text()
    assert "## Defended model over eps" in report and "eps 4/255" in report and "eps 8/255" in report
    assert "Defended model: mIoU (%) over eps" in report
    assert "PGD-2 adversarial, eps 4/255" in report and "| standard" in report


@pytest.mark.slow
def test_a_second_run_reuses_the_defended_checkpoint_and_gives_the_same_records(defended_run, tmp_path,
                                                                                 monkeypatch):
    out, cache, config = defended_run
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    assert main(["suite", "--config", str(config), "--out", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "suite.json").read_text())["trained"] == []
    strip = ("seconds", "reused", "engine_seconds")
    first, again = read_results(out / "results.json"), read_results(tmp_path / "again" / "results.json")
    assert [{k: v for k, v in r.items() if k not in strip} for r in first] == \
        [{k: v for k, v in r.items() if k not in strip} for r in again]


@pytest.mark.slow
def test_a_cached_checkpoint_of_another_defence_is_retrained_not_used(defended_run, tmp_path, monkeypatch):
    """The file of this defence holding another training (standard, say) is not taken for it."""
    out, cache, config = defended_run
    suite = json.loads((out / "suite.json").read_text())
    standard = suite["models"]["fcn-resnet50"]["checkpoint"]
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    target = copy / "checkpoints" / suite["models"][DEFENDED]["checkpoint"].rsplit("/", 1)[1]
    shutil.copy(standard.replace(str(cache), str(copy)), target)
    monkeypatch.setenv("HARNESS_CACHE", str(copy))
    assert main(["suite", "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "suite.json").read_text())["trained"] == [DEFENDED]
