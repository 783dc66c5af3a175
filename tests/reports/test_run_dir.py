"""``report`` validates a run directory as ``check`` validates results: one line, exit 2, nothing written."""

import json
import math
import os
import re

import numpy as np
import pytest

from harness.cli import main
from reports.run_dir import load_run

from ..conftest import forge_npy_header, npz_arrays


def edit_json(path, change):
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def edit_record(i, **changes):
    return lambda run: edit_json(run / "results.json", lambda d: d["results"][i].update(changes))


def edit_suite(change):
    return lambda run: edit_json(run / "suite.json", change)


def edit_curves(change):
    return lambda run: edit_json(run / "data" / "square_curves.json", change)


def edit_examples_meta(**changes):
    return lambda run: edit_json(run / "data" / "examples.json", lambda d: d.update(changes))


def edit_arrays(**changes):
    def edit(run):
        path = run / "data" / "examples.npz"
        arrays = npz_arrays(path)
        for name, change in changes.items():
            arrays[name] = change(arrays[name])
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)
    return edit


def drop_array(path, name):
    arrays = npz_arrays(path)
    del arrays[name]
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def write(name, data):
    return lambda run: (run / name).write_bytes(data)


def truncate(name):
    return lambda run: (run / name).write_bytes((run / name).read_bytes()[: (run / name).stat().st_size // 2])


def test_a_valid_run_dir_reports_and_exits_0(build_run, tmp_path, capsys):
    run = build_run(tmp_path / "run")
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "Table 1" in out and (run / "report" / "report.md").is_file()
    loaded = load_run(run)
    assert loaded.examples is not None and loaded.curves and loaded.sweep is not None


DAMAGE = [
    # Metrics and records: the results schema of check.
    (edit_record(0, pixel_accuracy=math.nan), r"record 0: pixel_accuracy must be a fraction in \[0, 1\], got NaN"),
    (edit_record(1, pixel_accuracy=1.5), r"record 1: pixel_accuracy must be a fraction in \[0, 1\], got 1.5"),
    (edit_record(2, mean_iou=None), r"record 2: mean_iou must be a fraction in \[0, 1\], got null"),
    (edit_record(0, mean_iou="0.5"), r"mean_iou must be a fraction"),
    (edit_record(0, attack=["pgd"]), "attack must be a non-empty string"),
    (edit_record(0, experiments="table1"), "experiments must be a list"),
    (edit_record(0, per_class_iou=[math.inf]), r"per_class_iou\[0\] must be a fraction"),
    (edit_record(0, queries=10**400), r"queries must be a finite number >= 0, got 1000.*\(401 digits\)"),
    (edit_record(0, n_images=10**30), r"n_images must be an integer >= 1 and <= 2\*\*53"),
    (edit_record(0, seconds=1e400), "seconds must be a finite number >= 0, got Infinity"),
    (edit_record(3, params={"eps": 8, "steps": "two"}), "params.steps must be an integer"),
    (lambda run: edit_json(run / "results.json", lambda d: [r["params"].pop("init") for r in d["results"]
                                                            if r["attack"] == "square"]),
     "a Square record lacks params.init"),
    (truncate("results.json"), "is not valid JSON"),
    (write("results.json", b"[" * 100_000), "nested too deeply"),
    (write("results.json", b""), "is not valid JSON"),
    # suite.json
    (write("suite.json", b"{not json"), "suite.json is not valid JSON"),
    (write("suite.json", b"[]"), "suite.json must be a JSON object, got a list"),
    (write("suite.json", b"{}"), "suite.json lacks 'suite'"),
    (write("suite.json", b"{\"a\":" * 100_000), "nested too deeply"),
    (edit_suite(lambda d: d.update(suite=[1])), "suite.json: suite must be a JSON object"),
    (edit_suite(lambda d: d.update(seconds="ten")), "suite.json.seconds must be a finite number"),
    (edit_suite(lambda d: d.update(phases={"models": "fast"})), "phases.models must be a finite number >= 0"),
    (edit_suite(lambda d: d.update(trained="fcn8s")), "trained must be a list"),
    (edit_suite(lambda d: d.update(models=[])), "models must be a JSON object"),
    (edit_suite(lambda d: d["models"]["fcn8s-vgg16"]["train"].update(lr="fast")), r"train.lr must be a finite"),
    (edit_suite(lambda d: d["models"]["fcn8s-vgg16"]["val_metrics"].update(pixel_accuracy=2)), "must be a fraction"),
    (edit_suite(lambda d: d["suite"]["check"].update(tolerance=-1)), "tolerance must be a finite number >= 0"),
    (edit_suite(lambda d: d["suite"]["check"].update(attack_tolerance=[3])), "attack_tolerance must be a JSON obj"),
    (edit_suite(lambda d: d["suite"].update(data="synthetic")), "suite.data must be a JSON object"),
    (edit_suite(lambda d: d["suite"]["data"].update(seed=True)), "seed must be an integer >= 0, got true"),
    # Figures' data
    (write("data/pgd_sweep.json", b"{}"), "pgd_sweep.json lacks 'eps'"),
    (lambda run: edit_json(run / "data" / "pgd_sweep.json", lambda d: d.update(eps=0)), "eps must be a finite"),
    (lambda run: edit_json(run / "data" / "pgd_sweep.json", lambda d: d["records"][0].update(n_images=-1)),
     "n_images must be an integer >= 1"),
    (write("data/square_curves.json", b"{\"curves\": 3}"), "curves must be a list"),
    (edit_curves(lambda d: d["curves"][0].update(model="../../escape")), "model must be a name of letters"),
    (edit_curves(lambda d: d["curves"][0]["engine"].update(name="a/b")), "engine.name must be a name"),
    (edit_curves(lambda d: d["curves"][0]["curves"][0].update(points=[])), "points must be a non-empty list"),
    (edit_curves(lambda d: d["curves"][0]["curves"][0]["points"][0].update(pixel_accuracy=math.nan)),
     "pixel_accuracy must be a fraction"),
    (edit_curves(lambda d: d["curves"][0]["curves"][0]["params"].update(eps="8")), "params.eps must be a finite"),
    (edit_curves(lambda d: d["curves"][0].update(clean_pixel_accuracy=3)), "clean_pixel_accuracy must be a fr"),
    # Examples
    (edit_examples_meta(eps=0), "eps must be a finite number > 0"),
    (edit_examples_meta(eps=-8), "eps must be a finite number > 0"),
    (edit_examples_meta(eps=math.nan), "eps must be a finite number > 0"),
    (edit_examples_meta(eps=1000), "eps must be a finite number > 0 and <= 255, got 1000"),
    (edit_examples_meta(class_names=[]), "class_names must be a non-empty list"),
    (edit_examples_meta(class_names="abc"), "class_names must be a non-empty list"),
    (edit_examples_meta(label=None), "label must be a non-empty string"),
    (write("data/examples.npz", b""), "examples.npz cannot be read"),
    (truncate("data/examples.npz"), "examples.npz cannot be read"),
    (write("data/examples.npz", b"PK\x03\x04 not a zip"), "examples.npz cannot be read"),
    (lambda run: (run / "data" / "examples.npz").unlink(), "examples.npz does not exist or is not a regular file"),
    (lambda run: ((run / "data" / "examples.npz").unlink(), os.mkfifo(run / "data" / "examples.npz")),
     "examples.npz does not exist or is not a regular file"),
    (lambda run: forge_npy_header(run / "data" / "examples.npz", "clean", (10**12,)),
     r"clean claims shape \(1000000000000,\)"),
    (lambda run: drop_array(run / "data" / "examples.npz", "labels"), "examples.npz lacks the array 'labels'"),
    (edit_arrays(clean=lambda a: a[:, :2]), "clean must be float32 \\(N, 3, H, W\\)"),
    (edit_arrays(clean=lambda a: a.astype(np.float64)), "clean must be float32"),
    (edit_arrays(clean=lambda a: a[:0]), "clean must be float32"),
    (edit_arrays(adversarial=lambda a: a[:1]), "adversarial must be float32"),
    (edit_arrays(adversarial=lambda a: np.full_like(a, np.nan)), "adversarial images must be finite values"),
    (edit_arrays(clean=lambda a: a * 2, adversarial=lambda a: a * 2), "clean images must be finite values in"),
    (edit_arrays(adversarial=lambda a: np.clip(a + 0.2, 0, 1)), "outside the eps 8/255 ball"),
    (edit_arrays(labels=lambda a: a[..., :-1]), "labels must be an integer array"),
    (edit_arrays(labels=lambda a: a.astype(np.float32)), "labels must be an integer array"),
    (edit_arrays(clean_pred=lambda a: a + 100), "clean_pred holds values outside the 7 classes"),
    (edit_arrays(adversarial_pred=lambda a: a.astype(np.int64) - 1), "adversarial_pred holds values outside"),
    (edit_arrays(labels=lambda a: np.full_like(a, 9)), "labels holds values outside the 7 classes and the ignore"),
    (edit_arrays(labels=lambda a: np.array(["x"] * len(a))), "labels must be an integer array"),
    # Class names are drawn in Figure 2's legend and written into the report: no terminal escapes or controls.
    (edit_examples_meta(class_names=["a\x1b[2J", "b", "c", "d", "e", "f", "g"]), "has control characters"),
    (edit_examples_meta(class_names=["a", "b\u202e", "c", "d", "e", "f", "g"]), "has control characters"),
]


@pytest.mark.parametrize("damage, message", DAMAGE)
def test_a_damaged_run_dir_is_one_line_exit_2_and_writes_nothing(build_run, tmp_path, capsys, damage, message):
    run = build_run(tmp_path / "run")
    damage(run)
    assert main(["report", str(run)]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and len(err) < 500, err
    assert re.search(message, err), err
    assert not (run / "report").exists()
    assert not list(tmp_path.rglob("*.png"))


def test_an_examples_archive_too_large_to_draw_is_refused(build_run, tmp_path, capsys):
    run = build_run(tmp_path / "run")
    edit_arrays(**{name: (lambda a: np.repeat(a, 40, axis=0)) for name in
                   ("clean", "adversarial", "labels", "clean_pred", "adversarial_pred")})(run)
    assert main(["report", str(run)]) == 2
    assert "clean must be float32 (N, 3, H, W) with 1 <= N <= 64" in capsys.readouterr().err


def test_check_reads_the_suite_json_beside_the_results_with_the_same_validator(build_run, tmp_path, capsys):
    run = build_run(tmp_path / "run")
    results = str(run / "results.json")
    assert main(["check", "--baseline", results, "--results", results]) == 0
    assert "tolerance 0.5 pt" in capsys.readouterr().out
    edit_suite(lambda d: d["suite"]["check"].update(tolerance=math.inf))(run)
    assert main(["check", "--baseline", results, "--results", results]) == 2
    assert "suite.check.tolerance must be a finite number >= 0, got Infinity" in capsys.readouterr().err


def test_names_with_rich_markup_or_tex_are_printed_and_drawn_as_they_are(build_run, tmp_path, capsys):
    run = build_run(tmp_path / "run")
    odd = r"[/]$\frac$ [bold]m"
    edit_json(run / "results.json",
              lambda d: [r.update(model=odd) for r in d["results"] if r["model"] == "fcn8s-vgg16"])
    edit_json(run / "data" / "pgd_sweep.json", lambda d: [r.update(model=odd) for r in d["records"]])
    edit_examples_meta(model=odd, label="$x", class_names=["$\\frac$", "[/]"] + [f"c{i}" for i in range(5)])(run)
    assert main(["report", str(run)]) == 0
    captured = capsys.readouterr()
    assert odd in captured.out and captured.err == ""
    assert odd.replace("*", "\\*") in (run / "report" / "report.md").read_text()
    assert (run / "report" / "figure2_examples.png").stat().st_size > 1000


@pytest.mark.parametrize("damage, message", [
    (edit_record(0, model="m" * 201), "record 0: model must be at most 200 characters long, got 201"),
    (edit_examples_meta(class_names=[f"c{i}" for i in range(300)]), "class_names holds 300 names; at most 255"),
    (edit_examples_meta(label="x" * 1000), "label must be at most 200 characters long"),
    (edit_suite(lambda d: d["suite"].update(source="/" + "d" * 5000)), "source must be at most 4096 characters"),
])
def test_strings_and_lists_beyond_what_the_harness_writes_are_refused(build_run, tmp_path, capsys, damage, message):
    run = build_run(tmp_path / "run")
    damage(run)
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and len(err) < 500
