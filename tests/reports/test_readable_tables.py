"""Tables stay readable at 80 columns and in a log file: every number printed in full, never cut to "…"."""

import io
import re
import subprocess
import sys

import pytest
from rich.console import Console

from harness.metrics import Scores
from reports.regression import compare, delta_table
from reports.results import make_record
from reports.tables import ReadableTable, robustness_table, scores_table

VOC = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
       "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]


def voc_scores(offset: float) -> Scores:
    per_class = [None if i == 7 else round(0.401 + offset + i / 41, 4) for i in range(len(VOC))]
    return Scores(0.912345 - offset, 0.654321 - offset, per_class, 123456)


def render(renderable, width: int | None) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(renderable)
    return out.getvalue()


def expected_numbers(rows: list[tuple[str, Scores]]) -> list[str]:
    numbers = []
    for _, s in rows:
        numbers += [f"{100 * s.pixel_accuracy:.2f}", f"{100 * s.mean_iou:.2f}"]
        numbers += [f"{100 * v:.1f}" for v in s.per_class_iou if v is not None]
    return numbers


@pytest.mark.parametrize("width", [40, 80, 120, None])  # None: not a terminal, rich's default of 80
@pytest.mark.parametrize("n_rows", [1, 2, 4])
def test_the_21_class_voc_scores_table_shows_every_number_in_full(width, n_rows):
    rows = [("clean", voc_scores(0))] + [(f"pgd-{10 * i}", voc_scores(0.01 * i)) for i in range(1, n_rows)]
    text = render(scores_table("fcn8s-vgg16 (paper), torch fp32 on cpu, voc val, 1449 images, 123456 labelled "
                               "pixels (values in %)", VOC, rows), width)
    assert "…" not in text
    for line in text.splitlines():
        assert len(line) <= (width or 80)
    assert "".join(text.split()).count("".join("labelled pixels (values in %)".split())) == 1  # the whole title
    for i, name in enumerate(VOC):  # one line per class (per part when split), its IoU in every column
        values = [s.per_class_iou[i] for _, s in rows]
        lines = [line for line in text.splitlines() if re.search(rf"IoU {name}\b", line)]
        cells = [c for line in lines for c in re.findall(r"\d+\.\d|-(?= )", line.split(name, 1)[1])]
        assert cells == ["-" if v is None else f"{100 * v:.1f}" for v in values], lines
    for number in expected_numbers(rows):
        assert number in text
    assert "pixel accuracy" in text and "mIoU" in text


def test_a_table_wider_than_the_console_is_split_by_columns_repeating_the_row_labels():
    attacks = ["fgsm", *(f"pgd-{n}" for n in (1, 2, 5, 10, 20, 50, 100, 200)), *(f"mifgsm-{n}" for n in (10, 20))]
    records = [make_record(model=model, engine="torch", precision="fp32", attack=a.split("-")[0],
                           params={"eps": 8, **({"steps": int(a.split("-")[1])} if "-" in a else {})},
                           n_images=20, scores=Scores(0.123456 + 0.01 * j, 0.5, [0.5], 100))
               for model in ("fcn8s-vgg16", "fcn-resnet101") for j, a in enumerate(attacks)]
    table = robustness_table("Table 1: white-box attacks, pixel accuracy (%)", records)
    text = render(table, 80)
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
    for j, attack in enumerate(attacks):
        assert attack in text and f"{100 * (0.123456 + 0.01 * j):.2f}" in text
    assert text.count("fcn-resnet101") >= 2  # the row labels are repeated in every part
    assert text.count("Table 1: white-box attacks") == 1
    wide = render(table, 400)
    assert wide.count("fcn-resnet101") == 1  # one table when it fits


def test_the_regression_table_prints_every_delta_at_80_columns():
    def record(pa, attack="pgd", n=20):
        return make_record(model="fcn-resnet101", engine="ort", precision="int8", attack=attack,
                           params={"eps": 8, "steps": 10, "alpha": 2.0, "random_start": True, "seed": 0},
                           n_images=n, scores=Scores(pa, 0.4, [0.4], 100), size="paper")
    comparison = compare([record(0.5), record(0.6, n=5)], [record(0.4567), record(0.6, n=5)])
    text = render(delta_table(comparison), 80)
    assert "…" not in text
    for number in ("50.00", "45.67", "-4.33", "60.00", "+0.00", "REGRESSION"):
        assert number in text


def test_a_column_that_cannot_fit_folds_instead_of_truncating():
    table = ReadableTable(title="t", key_columns=1)
    table.add_column("a very long row label column")
    table.add_column("value", justify="right", no_wrap=True)
    table.add_row("x" * 30, "123456789.123")
    text = render(table, 20)
    assert "…" not in text
    column = "".join(line.split("│")[2].strip() for line in text.splitlines() if line.count("│") == 3)
    assert column == "123456789.123"


def test_eval_style_output_in_a_log_file_keeps_every_number():
    """A real process whose stdout is a pipe (as in CI): rich's non-terminal default of 80 columns."""
    code = ("from harness.metrics import Scores; from reports.tables import scores_table; "
            "from rich.console import Console; import sys; sys.path.insert(0, '.');"
            f"VOC = {VOC!r};"
            "s = Scores(0.912345, 0.654321, [0.401 + i / 41 for i in range(21)], 1);"
            "Console().print(scores_table('a title ' * 20, VOC, [('clean', s)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "TERM": "dumb", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert "…" not in out.stdout and "91.23" in out.stdout and "65.43" in out.stdout
    for i in range(21):
        assert f"{100 * (0.401 + i / 41):.1f}" in out.stdout


def test_the_export_parity_table_prints_every_number_whole_at_80_columns():
    from exporters.parity import ParityReport, parity_table

    report = ParityReport(label="fcn-resnet101", precision="int8", n_images=32, n_pixels=4096, max_abs_diff=0.123456,
                          mean_abs_diff=0.0123456, agreement=0.987654, reference_accuracy=0.912345,
                          candidate_accuracy=0.901234, min_agreement=0.98)
    for width in (80, None):
        text = render(parity_table("Parity against PyTorch", [report]), width)
        assert "…" not in text
        for number in ("0.12", "0.012", "98.765", "98", "91.23", "90.12", "-1.11", "pass"):
            assert number in text, (width, number, text)
