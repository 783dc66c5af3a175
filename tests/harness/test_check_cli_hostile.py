"""``check`` fails closed on results and baselines off the schema: one line on stderr, exit 2, never a traceback."""

import json
import math
import re

import pytest

from harness.cli import main
from harness.metrics import Scores
from reports.results import make_record, write_results


def record(**changes):
    base = make_record(model="fcn8s-vgg16", engine="torch", precision="fp32", attack="pgd",
                       params={"eps": 8, "steps": 10, "seed": 0}, n_images=20,
                       scores=Scores(0.9, 0.7, [0.7, None], 1000), queries=200, seconds=1.5, size="reduced")
    return {**base, **changes}


def document(records, **changes):
    return {"schema": 1, "harness_version": "0.1.0", "created": "2026-12-01T00:00:00+00:00", "environment": {},
            "results": records, **changes}


BAD_RECORDS = [
    ({"attack": ["pgd"]}, "attack must be a non-empty string, got a list"),
    ({"attack": {"name": "pgd"}}, "attack must be a non-empty string, got an object"),
    ({"attack": ""}, "attack must be a non-empty string"),
    ({"model": 7}, "model must be a non-empty string, got 7"),
    ({"engine": None}, "engine must be a non-empty string, got null"),
    ({"precision": True}, "precision must be a non-empty string, got true"),
    ({"pixel_accuracy": math.nan}, r"pixel_accuracy must be a fraction in \[0, 1\], got NaN"),
    ({"pixel_accuracy": 1.5}, r"pixel_accuracy must be a fraction in \[0, 1\], got 1.5"),
    ({"mean_iou": None}, "mean_iou must be a fraction"),
    ({"mean_iou": "0.7"}, "mean_iou must be a fraction"),
    ({"mean_iou": -math.inf}, "mean_iou must be a fraction"),
    ({"pixel_accuracy": True}, "got true"),
    ({"per_class_iou": [0.5, 2.0]}, r"per_class_iou\[1\] must be a fraction"),
    ({"per_class_iou": "0.5"}, "per_class_iou must be a non-empty list"),
    ({"per_class_iou": []}, "per_class_iou must be a non-empty list"),
    ({"per_class_iou": [[0.5]]}, r"per_class_iou\[0\] must be a fraction in \[0, 1\], got a list"),
    ({"n_images": 0}, "n_images must be an integer >= 1"),
    ({"n_images": 20.0}, "n_images must be an integer >= 1, got 20.0"),
    ({"n_images": True}, "n_images must be an integer >= 1, got true"),
    ({"n_images": "20"}, "n_images must be an integer"),
    ({"queries": -1}, "queries must be a finite number >= 0"),
    ({"seconds": math.inf}, "seconds must be a finite number >= 0, got Infinity"),
    ({"seconds": "1.5"}, "seconds must be a finite number"),
    ({"params": [8]}, "params must be a JSON object, got a list"),
    ({"params": {"eps": [8]}}, "params.eps must be a finite number > 0, got a list"),
    ({"params": {"eps": 0}}, "params.eps must be a finite number > 0, got 0"),
    ({"params": {"eps": "8"}}, "params.eps must be a finite number > 0"),
    ({"params": {"steps": 2.5}}, "params.steps must be an integer >= 1, got 2.5"),
    ({"params": {"random_start": 1}}, "params.random_start must be true or false"),
    ({"params": {"whatever": {"nested": 1}}}, "params.whatever must be a string, finite number, boolean or null"),
    ({"params": {"whatever": math.nan}}, "params.whatever must be a string, finite number, boolean or null"),
    ({"size": 64}, "size must be a non-empty string, got 64"),
    ({"source_model": ["a"]}, "source_model must be a non-empty string"),
    ({"experiments": "table1"}, "experiments must be a list"),
    ({"engine_seconds": -2}, "engine_seconds must be a finite number >= 0"),
]


@pytest.mark.parametrize("which", ["results", "baseline"])
@pytest.mark.parametrize("changes, message", BAD_RECORDS)
def test_a_record_off_the_schema_is_one_line_exit_2(tmp_path, capsys, which, changes, message):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    write_results(good, [record()])
    bad.write_text(json.dumps(document([record(**changes)])))
    results, baseline = (bad, good) if which == "results" else (good, bad)
    assert main(["check", "--baseline", str(baseline), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert "record 0" in err
    assert re.search(message, err), err


@pytest.mark.parametrize("text, message", [
    ("[" * 200_000, "nested too deeply"),
    ('{"schema": 1, "results": ' + "[" * 200_000, "nested too deeply"),
    ("{\"a\":" * 100_000, "nested too deeply"),
    ('{"schema": 1, "results": [], "x": ' + "1" * 5000 + "}", "is not valid JSON"),
    (json.dumps(document([record()], schema=True)), "not a harness results document of schema 1"),
    (json.dumps(document([record()], schema=1.0)), "not a harness results document of schema 1"),
    (json.dumps(document([record()], schema="1")), "not a harness results document of schema 1"),
    (json.dumps(document({"0": record()})), "not a harness results document of schema 1"),
    (json.dumps(document([record(), 7])), "record 1 must be a JSON object, got 7"),
    (json.dumps(document([{"model": "m"}])), "record 0 lacks engine, precision"),
    (json.dumps([record()]), "not a harness results document"),
    ("", "is not valid JSON"),
    ("\xff\xfe", "is not UTF-8 text"),
])
@pytest.mark.parametrize("which", ["results", "baseline"])
def test_a_document_off_the_schema_is_one_line_exit_2(tmp_path, capsys, which, text, message):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    write_results(good, [record()])
    bad.write_bytes(text.encode("latin-1") if text.startswith("\xff") else text.encode())
    results, baseline = (bad, good) if which == "results" else (good, bad)
    assert main(["check", "--baseline", str(baseline), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and len(err) < 400, err
    assert message in err, err


def test_a_directory_or_fifo_as_results_is_one_line_not_a_hang(tmp_path, capsys):
    import os

    good = tmp_path / "good.json"
    write_results(good, [record()])
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (tmp_path, fifo):
        assert main(["check", "--baseline", str(good), "--results", str(path)]) == 2
        assert "is not a regular file" in capsys.readouterr().err


def test_update_baseline_never_adopts_results_off_the_schema(tmp_path, capsys):
    base, results = tmp_path / "baseline.json", tmp_path / "results.json"
    results.write_text(json.dumps(document([record(attack=["pgd"])])))
    assert main(["check", "--baseline", str(base), "--results", str(results), "--update-baseline"]) == 2
    assert not base.exists()
