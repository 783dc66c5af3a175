"""Win counts of worst cases and the sanity warnings: in the console tables, the suite's tables and report.md,
and a damaged ``worst_case`` field is one line, exit 2, before anything is written."""

import io
import json
import re

import pytest
from rich.console import Console

from harness.attacks.sanity import sanity_warnings
from harness.cli import main
from harness.metrics import Scores
from reports import suite_tables
from reports.results import make_record, write_results
from reports.tables import attack_notes, wins_table

MEMBERS = ["apgd-ce-100", "apgd-mce-100", "apgd-bmce-100", "apgd-js-100"]


def _sea(model="fcn8s-vgg16", n=4, pa=(1, 2, 0, 1), miou=(0, 3, 0, 1)):
    return make_record(model=model, engine="torch", precision="fp32", attack="sea",
                       params={"eps": 8.0, "members": "+".join(MEMBERS), "seed": 0}, n_images=n,
                       scores=Scores(0.05, 0.02, [0.05, 0.0], 100), experiments=["table1"],
                       worst_case={"members": MEMBERS, "pixel_accuracy_wins": dict(zip(MEMBERS, pa, strict=True)),
                                   "mean_iou_wins": dict(zip(MEMBERS, miou, strict=True)),
                                   "mean_iou_selection": "greedy over images"})


def _text(table) -> str:
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(table)
    return out.getvalue()


def test_the_wins_table_lists_every_member_with_both_counts():
    clean = make_record(model="fcn8s-vgg16", engine="torch", precision="fp32", attack="none", params={}, n_images=4,
                        scores=Scores(0.9, 0.5, [0.9, 0.1], 100), experiments=["table1"])
    records = [clean, _sea(), _sea("fcn-resnet50", pa=(0, 4, 0, 0), miou=(0, 4, 0, 0))]
    text = _text(wins_table("wins", records))
    for member, pa, miou in zip(MEMBERS, (1, 2, 0, 1), (0, 3, 0, 1), strict=True):
        assert re.search(rf"{member}\W+{pa}\W+{miou}\W", text), text
    assert "fcn-resnet50" in text and text.count("sea") == 2
    assert wins_table("wins", [clean]) is None
    tables = suite_tables.table1(records)
    assert len(tables) == 3 and "images won" in str(tables[2].title)


def test_console_notes_show_wins_and_warnings():
    fgsm = make_record(model="fcn8s-vgg16", engine="torch", precision="fp32", attack="fgsm",
                       params={"eps": 8.0, "seed": 0}, n_images=4, scores=Scores(0.01, 0.01, [0.01, 0.0], 100))
    pgd = make_record(model="fcn8s-vgg16", engine="torch", precision="fp32", attack="pgd",
                      params={"eps": 8.0, "steps": 20, "alpha": 2.0, "seed": 0}, n_images=4,
                      scores=Scores(0.30, 0.1, [0.3, 0.0], 100))
    notes = attack_notes("White-box", [_sea(), fgsm, pgd])
    assert len(notes) == 2
    text = _text(notes[1])
    assert "WARNING" in text and "FGSM leaves 1.00 %" in text and "pgd-20 (30.00 %)" in text
    assert attack_notes("White-box", [pgd]) == []
    assert [w.kind for w in sanity_warnings([fgsm, pgd])] == ["fgsm"]


@pytest.mark.parametrize(("damage", "message"), [
    (lambda wc: wc.update(pixel_accuracy_wins={"a": -1, "b": 5}), r"pixel_accuracy_wins.a must be an integer >= 0"),
    (lambda wc: wc.update(mean_iou_wins={"a": 1}), r"mean_iou_wins counts 1 images, but the record has 4"),
    (lambda wc: wc.pop("mean_iou_wins"), r"worst_case lacks 'mean_iou_wins'"),
    (lambda wc: wc.update(pixel_accuracy_wins=[1, 3]), r"pixel_accuracy_wins must be a JSON object"),
    (lambda wc: wc.update(mean_iou_wins={"a": True, "b": 3}), r"mean_iou_wins.a must be an integer"),
    (lambda wc: wc.update(mean_iou_wins={"x" * 300: 4}), r"an attack name must be at most 200 characters"),
], ids=["negative", "wrong total", "missing", "list", "bool", "long name"])
def test_a_damaged_worst_case_field_is_one_line_and_writes_nothing(build_run, tmp_path, capsys, damage, message):
    run = build_run(tmp_path / "run")
    doc = json.loads((run / "results.json").read_text())
    sea = _sea("fcn-resnet50")
    damage(sea["worst_case"])
    write_results(run / "results.json", [*doc["results"], sea])
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and re.search(message, err), err
    assert not (run / "report").exists()


def test_the_report_shows_wins_and_sanity_warnings(build_run, tmp_path, capsys):
    run = build_run(tmp_path / "run")
    doc = json.loads((run / "results.json").read_text())
    records = doc["results"]
    fgsm = next(r for r in records if r["attack"] == "fgsm" and r["model"] == "fcn-resnet50")
    fgsm["pixel_accuracy"] = 0.0  # FGSM below a PGD that crosses the ball: a sanity warning
    pgd = {**fgsm, "attack": "pgd", "pixel_accuracy": 0.5,
           "params": {"eps": 8.0, "steps": 10, "alpha": 2.0, "random_start": True, "seed": 0}}
    write_results(run / "results.json", [*records, pgd, _sea("fcn-resnet50")])
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "images won" in out and "Sanity checks" in out
    report = (run / "report" / "report.md").read_text()
    assert "## Sanity checks" in report and "FGSM leaves 0.00 %" in report and "apgd-mce-100" in report
