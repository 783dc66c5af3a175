"""Table 1 and Figure 3 renderers, from result records (no model involved)."""

import pytest
from rich.console import Console

from harness.metrics import Scores
from reports.figures import pgd_sweep_curves, plot_pgd_sweep
from reports.results import make_record
from reports.tables import attack_label, robustness_table


def _record(model, attack, params, accuracy):
    scores = Scores(pixel_accuracy=accuracy, mean_iou=accuracy / 2, per_class_iou=[None], n_pixels=10)
    return make_record(model=model, engine="torch", precision="fp32", attack=attack, params=params,
                       n_images=2, scores=scores)


RECORDS = [
    _record("a", "none", {}, 0.9),
    _record("a", "fgsm", {"eps": 8.0, "seed": 0}, 0.7),
    _record("a", "pgd", {"eps": 8.0, "steps": 20, "alpha": 2.0, "seed": 0}, 0.3),
    _record("a", "pgd", {"eps": 8.0, "steps": 100, "alpha": 2.0, "seed": 0}, 0.2),
    _record("b", "none", {}, 0.8),
    _record("b", "mifgsm", {"eps": 8.0, "steps": 20, "decay": 1.0, "alpha": 0.4, "seed": 0}, 0.5),
]


def test_labels():
    assert [attack_label(r) for r in RECORDS] == ["clean", "fgsm", "pgd-20", "pgd-100", "clean", "mifgsm-20"]


def test_robustness_table_has_a_row_per_model_and_a_column_per_attack():
    console = Console(width=200, record=True)
    console.print(robustness_table("T1", RECORDS))
    text = console.export_text()
    assert "clean" in text and "pgd-100" in text and "mifgsm-20" in text
    row_a = next(line for line in text.splitlines() if line.startswith("│ a "))
    assert "90.00" in row_a and "20.00" in row_a and row_a.count("-") == 1  # no mifgsm-20 for a
    console = Console(width=200, record=True)
    console.print(robustness_table("T1", RECORDS, "mean_iou"))
    assert "45.00" in console.export_text()


def test_sweep_curves_and_png(tmp_path):
    curves = pgd_sweep_curves(RECORDS)
    assert list(curves) == ["a", "b"] and [x for x, _ in curves["a"]] == [0, 20, 100]
    assert [y for _, y in curves["a"]] == pytest.approx([90, 30, 20]) and curves["b"] == [(0, 80.0)]
    path = tmp_path / "fig.png"
    plot_pgd_sweep(RECORDS, path, "Figure 3")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]
