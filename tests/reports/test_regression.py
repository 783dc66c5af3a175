"""The regression check's pure logic: keys, tolerances, statuses, exit codes, the delta table."""

import io
import math
import time

import pytest
from rich.console import Console

from harness.errors import HarnessError
from harness.metrics import Scores
from reports.regression import (
    DEFAULT_TOLERANCE,
    IMPROVED,
    MISSING,
    NEW,
    OK,
    REGRESSION,
    compare,
    delta_table,
    key_label,
    record_key,
)
from reports.results import make_record, read_results, write_results


def record(attack="none", params=None, pa=0.90, miou=0.70, n=20, model="fcn8s-vgg16", engine="torch",
           precision="fp32", **extra):
    return make_record(model=model, engine=engine, precision=precision, attack=attack, params=params or {},
                       n_images=n, scores=Scores(pa, miou, [miou], 1000), size="reduced", **extra)


def suite(drop=0.0):
    """A small run: clean and PGD on torch, clean and Square on ort int8 (fewer images), a transfer."""
    return [record(),
            record("pgd", {"eps": 8, "steps": 10, "seed": 0}, pa=0.30 - drop, miou=0.15),
            record(engine="ort", precision="int8", pa=0.89, miou=0.69),
            record("square", {"eps": 8, "n_queries": 100}, engine="ort", precision="int8", n=8, pa=0.60, miou=0.40),
            record("pgd", {"eps": 8, "steps": 10, "seed": 0}, model="fcn-resnet50", pa=0.50, miou=0.30,
                   source_model="fcn8s-vgg16", source_engine="torch")]


def statuses(comparison):
    return {key_label(r.key): r.status for r in comparison.rows}


def test_identical_results_pass():
    comparison = compare(suite(), suite())
    assert {r.status for r in comparison.rows} == {OK}
    code, verdict = comparison.outcome()
    assert code == 0 and verdict.startswith("check passed: 5 record(s)")


def test_a_drop_beyond_tolerance_is_a_regression_listed_first():
    comparison = compare(suite(), suite(drop=0.02))  # 2 points
    assert comparison.rows[0].status == REGRESSION and comparison.rows[0].key == record_key(suite()[1])
    assert comparison.rows[0].delta("pixel_accuracy") == pytest.approx(-2.0)
    assert [r.status for r in comparison.rows[1:]] == [OK] * 4
    code, verdict = comparison.outcome()
    assert code == 1 and "check FAILED: 1 of 5" in verdict and "pgd" in verdict


def test_a_drop_within_or_at_tolerance_passes():
    assert compare(suite(), suite(drop=0.005)).outcome()[0] == 0
    assert compare(suite(), suite(drop=0.02), tolerance=2.5).outcome()[0] == 0
    # Exactly the tolerance (0.90 -> 0.89 is -1.0000000000000009 points in floats) passes.
    assert DEFAULT_TOLERANCE == 1.0
    assert compare([record(pa=0.90)], [record(pa=0.89)]).rows[0].status == OK


def test_a_mean_iou_drop_alone_fails():
    assert compare([record(miou=0.70)], [record(miou=0.68)]).rows[0].status == REGRESSION


def test_improvements_are_shown_and_pass():
    comparison = compare([record(pa=0.80)], [record(pa=0.85)])
    assert comparison.rows[0].status == IMPROVED
    code, verdict = comparison.outcome()
    assert code == 0 and "1 improved" in verdict


def test_attack_tolerance_overrides_the_default():
    base, now = suite(), suite()
    now[3] = record("square", {"eps": 8, "n_queries": 100}, engine="ort", precision="int8", n=8, pa=0.57, miou=0.40)
    assert compare(base, now).outcome()[0] == 1
    assert compare(base, now, attack_tolerances={"square": 4.0}).outcome()[0] == 0
    assert compare(base, now, attack_tolerances={"pgd": 4.0}).outcome()[0] == 1


def test_a_missing_record_fails_closed_with_exit_2():
    comparison = compare(suite(), suite()[:-1])
    assert comparison.rows[0].status == MISSING and comparison.rows[0].current is None
    code, verdict = comparison.outcome()
    assert code == 2 and "1 baseline record(s) missing" in verdict and "from fcn8s-vgg16/torch" in verdict


def test_a_new_record_fails_closed_unless_allowed():
    comparison = compare(suite()[:-1], suite())
    assert comparison.rows[0].status == NEW
    assert comparison.outcome()[0] == 2 and "--allow-new" in comparison.outcome()[1]
    code, verdict = comparison.outcome(allow_new=True)
    assert code == 0 and "1 new, not checked" in verdict


def test_missing_records_win_over_regressions():
    code, verdict = compare(suite(), suite(drop=0.05)[:-1]).outcome()
    assert code == 2 and "and 1 regression(s)" in verdict


def test_transfer_records_that_differ_only_by_source_are_two_records():
    a = record("pgd", {"eps": 8}, source_model="fcn8s-vgg16", source_engine="torch")
    b = record("pgd", {"eps": 8}, source_model="fcn8s-vgg16", source_engine="ort", pa=0.5)
    assert record_key(a) != record_key(b)
    comparison = compare([a, b], [a, b])
    assert len(comparison.rows) == 2 and comparison.outcome()[0] == 0
    # Swapping the sources is caught: each record is compared with its own baseline.
    b_dropped = record("pgd", {"eps": 8}, source_model="fcn8s-vgg16", source_engine="ort", pa=0.4)
    assert compare([a, b], [a, b_dropped]).outcome()[0] == 1


def test_clean_records_on_different_image_counts_are_two_records():
    assert compare([record(n=20), record(n=8)], [record(n=20), record(n=8)]).outcome()[0] == 0
    code, verdict = compare([record(n=20)], [record(n=8)]).outcome()
    assert code == 2 and "n=20" in verdict


def test_params_key_is_canonical():
    a = record("pgd", {"eps": 8, "steps": 10})
    b = record("pgd", {"steps": 10.0, "eps": 8.0})
    assert record_key(a) == record_key(b)
    assert record_key(a) != record_key(record("pgd", {"eps": 8, "steps": 20}))


def test_duplicate_keys_are_an_input_error():
    with pytest.raises(HarnessError, match="two records have the key fcn8s-vgg16") as e:
        compare(suite(), suite() + [record()], where=("baseline b.json", "results r.json"))
    assert e.value.exit_code == 2 and "results r.json" in str(e.value)
    with pytest.raises(HarnessError, match="baseline"):
        compare(suite() + [record()], suite())


@pytest.mark.parametrize("field, value, message", [
    ("pixel_accuracy", math.nan, r"must be a fraction in \[0, 1\], got NaN"),
    ("mean_iou", 1.5, "got 1.5"),
    ("mean_iou", "0.7", 'got "0.7"'),
    ("pixel_accuracy", True, "got true"),
    ("params", [8], "params must be a JSON object"),
])
def test_invalid_records_are_an_input_error(field, value, message):
    bad = {**record(), field: value}
    with pytest.raises(HarnessError, match=message) as e:
        compare([record()], [bad])
    assert e.value.exit_code == 2 and "record 0" in str(e.value)


def test_an_empty_baseline_or_a_negative_tolerance_is_an_input_error():
    with pytest.raises(HarnessError, match="no records"):
        compare([], [record()])
    with pytest.raises(HarnessError, match="tolerance"):
        compare([record()], [record()], tolerance=-1)
    with pytest.raises(HarnessError, match="tolerance"):
        compare([record()], [record()], attack_tolerances={"none": math.inf})


def test_records_survive_a_results_json_round_trip(tmp_path):
    write_results(tmp_path / "base.json", suite())
    write_results(tmp_path / "now.json", suite(drop=0.02))
    comparison = compare(read_results(tmp_path / "base.json"), read_results(tmp_path / "now.json"))
    assert comparison.outcome()[0] == 1


def test_delta_table_marks_failing_rows_and_shows_every_value():
    comparison = compare(suite() + [record("fgsm", {"eps": 8})], suite(drop=0.02) + [record("mifgsm", {"eps": 8})])
    out = io.StringIO()
    Console(file=out, width=200).print(delta_table(comparison))
    text = out.getvalue()
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip() and line.split()[0].isalpha()}
    assert "30.00" in lines["REGRESSION"] and "28.00" in lines["REGRESSION"] and "-2.00" in lines["REGRESSION"]
    assert "fgsm eps=8" in lines["MISSING"] and "mifgsm eps=8" in lines["NEW"]
    assert "fcn8s-vgg16/torch" in text  # the source column of the transfer record
    assert "…" not in text


def test_a_results_file_of_thousands_of_records_prints_the_worst_rows_only_and_says_so():
    baseline = [record(n=i + 1) for i in range(3000)]
    current = [record(n=i + 1, pa=0.80 if i == 2999 else 0.90) for i in range(3000)]
    comparison = compare(baseline, current)
    out = io.StringIO()
    start = time.perf_counter()
    Console(file=out, width=200).print(delta_table(comparison, max_rows=50))
    assert time.perf_counter() - start < 10  # all 3000 rows took minutes
    text = out.getvalue()
    assert "the worst 50 of 3000 records, 2950 not shown (2950 ok)" in text
    assert "REGRESSION" in text and text.count(" ok ") == 49
    assert comparison.outcome()[0] == 1  # the verdict still counts every record
