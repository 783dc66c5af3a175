"""A suite run's report, rendered from its run directory alone: ``DIR/report/report.md`` and its PNG figures.

Reads what harness/suite/runner.py recorded (``results.json``, ``suite.json``, ``data/*``) and runs nothing: no model,
no checkpoint, no engine. :func:`load_run` (reports.run_dir) raises HarnessError (one line) when the directory is
not a readable, valid suite run; :func:`render_report` overwrites the report directory's files atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from harness.data.base import IGNORE_INDEX
from harness.fileio import write_bytes_atomic
from reports import suite_tables
from reports.example_grid import plot_example_grid
from reports.figures import plot_pgd_sweep, plot_square_curves
from reports.markdown import markdown_table
from reports.run_dir import RecordedRun, load_run, read_suite_check

__all__ = ["RecordedRun", "load_run", "print_tables", "read_suite_check", "render_report", "summary_tables"]


def summary_tables(run: RecordedRun) -> list[Table]:
    """What the terminal shows at the end of a run: Table 1, the defended model over eps, Figure 3's numbers,
    Table 2 on torch fp32, the deployment gap and the Square Attack results."""
    table1 = suite_tables.table1(run.records)
    return [*table1[:1], *table1[2:], *suite_tables.defended_eps(run.records)[:1], *suite_tables.sweep(run.records),
            *suite_tables.transfer(run.records)[:1], *suite_tables.deployment_gap(run.records),
            *suite_tables.square(run.records), *suite_tables.sanity(run.records)]


def print_tables(console: Console, tables: list[Table]) -> None:
    """Each table under its title (ReadableTable prints the title on lines of its own and never cuts a number)."""
    for table in tables:
        console.print(table)


def render_report(run: RecordedRun) -> Path:
    """Write ``report/report.md`` and its figures into the run directory; returns the report's path."""
    out = run.directory / "report"
    out.mkdir(parents=True, exist_ok=True)
    suite, config = run.suite, run.suite.get("suite", {})
    lines = [f"# Robustness report: {config.get('name', 'suite')}", "",
             *_run_summary(run), ""]
    lines += _section("Models", suite_tables.models(suite))
    lines += _section("Table 1: white-box attacks", suite_tables.table1(run.records),
                      "Pixel accuracy and mIoU in % of each model in PyTorch fp32, clean and under each attack "
                      "(\"-\": not run, as the paper leaves out PGD-200 for the ResNets). A worst case (sea) reports "
                      "the pixel accuracy of its per-image minimum and the mIoU of a greedy selection over images; "
                      "the last table says which attack won how many images.")
    lines += _section("Defended model over eps", [*suite_tables.defended_eps(run.records),
                                                  *suite_tables.defended_eps(run.records, "mean_iou")],
                      "The adversarially trained model ([models] defended; its training is in the Models table) "
                      "under [whitebox] defended_columns at each radius of defended_eps, on Table 1's images: where "
                      "plain PGD and the worst case separate, and how accuracy falls as eps grows.")
    if run.examples is not None and run.examples_meta is not None:
        lines += _examples_section(run, out)
    if run.sweep is not None:
        lines += _sweep_section(run, out)
    lines += _section("Table 2: transfer", suite_tables.transfer(run.records),
                      "Adversarial examples crafted white-box on each source model (rows) in PyTorch fp32, evaluated "
                      "on each target model (columns) as a black box; * marks the white-box cells. One table per "
                      "target engine and precision.")
    lines += _section("Deployment gap", suite_tables.deployment_gap(run.records),
                      "Does the deployed engine keep the model's accuracy, clean and under attack? Each model's "
                      "own examples, scored through every engine and precision.")
    if run.curves:
        lines += _square_section(run, out)
    lines += _section("Sanity checks", suite_tables.sanity(run.records),
                      "AutoAttack-style checks over every record: a black-box attack stronger than the white-box "
                      "ones, accuracy rising with eps or iterations, FGSM stronger than PGD. Each says the gradients "
                      "may be masked or an attack is broken.")
    lines += _check_section(run)
    linked = {line.split("](")[1].rstrip(")") for line in lines if line.startswith("![")}
    for stale in out.glob("figure*.png"):  # figures of an earlier run into the same directory
        if stale.name not in linked:
            stale.unlink()
    path = out / "report.md"
    write_bytes_atomic(path, ("\n".join(lines).rstrip() + "\n").encode())
    return path


def _section(heading: str, tables: list[Table], text: str = "") -> list[str]:
    if not tables:
        return []
    lines = [f"## {heading}", ""]
    if text:
        lines += [text, ""]
    for table in tables:
        lines += [markdown_table(table, title=True), ""]
    return lines


def _run_summary(run: RecordedRun) -> list[str]:
    suite, config = run.suite, run.suite.get("suite", {})
    data = config.get("data", {})
    phases = ", ".join(f"{k} {v:.0f} s" for k, v in suite.get("phases", {}).items())
    trained = suite.get("trained") or []
    return [f"- suite: {config.get('source', '-')}; harness {suite.get('harness_version', '-')}; "
            f"run {suite.get('created', '-')}",
            f"- data: {data.get('source', '-')} ({data.get('image_size') or 'default'} px, "
            f"seed {data.get('seed', 0)}); {len(run.records)} records in results.json",
            f"- time: {suite.get('seconds', 0):.0f} s ({phases}); models trained in this run: "
            f"{', '.join(trained) if trained else 'none (all cached)'}"]


def _examples_section(run: RecordedRun, out: Path) -> list[str]:
    arrays, meta = run.examples, run.examples_meta
    assert arrays is not None and meta is not None
    eps = float(meta["eps"])
    what = f"{meta['label']} (eps {eps:g}/255) on {meta['model']}"
    first = _most_fooled(arrays)
    one = slice(first, first + 1)
    plot_example_grid(arrays["clean"][one], arrays["adversarial"][one], arrays["clean_pred"][one],
                      arrays["adversarial_pred"][one], meta["class_names"], eps, out / "figure1_example.png",
                      f"Figure 1: an adversarial example, {what}")
    plot_example_grid(arrays["clean"], arrays["adversarial"], arrays["clean_pred"], arrays["adversarial_pred"],
                      meta["class_names"], eps, out / "figure2_examples.png",
                      f"Figure 2: {len(arrays['clean'])} examples, {what}")
    return ["## Figures 1-2: adversarial examples", "",
            f"Columns: the clean image, the perturbation amplified x{255 / (2 * eps):.0f} (grey = 0), the adversarial "
            f"image, the model's segmentation of each. Attack {what}, PyTorch fp32. Figure 1 is the example the "
            "attack fooled most; Figure 2 the first images.", "",
            "![Figure 1](figure1_example.png)", "", "![Figure 2](figure2_examples.png)", ""]


def _most_fooled(arrays: dict[str, np.ndarray]) -> int:
    """The example whose labelled pixels the attack turned wrong the most (the paper's Figure 1 is a striking one)."""
    labelled = arrays["labels"] != IGNORE_INDEX
    lost = ((arrays["clean_pred"] == arrays["labels"]) & labelled).sum(axis=(1, 2)) \
        - ((arrays["adversarial_pred"] == arrays["labels"]) & labelled).sum(axis=(1, 2))
    return int(np.argmax(lost))


def _sweep_section(run: RecordedRun, out: Path) -> list[str]:
    sweep = run.sweep
    assert sweep is not None
    title = f"PGD on {sweep['n_images']} images, eps {sweep['eps']:g}/255, step size eps/iterations"
    plot_pgd_sweep(sweep["records"], out / "figure3_pgd_sweep.png", title)
    return ["## Figure 3: PGD iterations", "", "![Figure 3](figure3_pgd_sweep.png)", "",
            *(markdown_table(t, title=True) for t in suite_tables.sweep(run.records)), ""]


def _square_section(run: RecordedRun, out: Path) -> list[str]:
    # A run's curve documents name their attack ([square] attack); older runs' have none: the Square Attack.
    hard_label = any(doc.get("attack") == "hardlabel" for doc in run.curves or [])
    title = "hard-label attack" if hard_label else "Square Attack"
    lines = [f"## Figure 4: {title}", "",
             "Black-box, class maps only, through the deployed engine; pixel accuracy and the fraction of fooled "
             "pixels against queries per image, from each initialisation." if hard_label else
             "Black-box, logits only, through the deployed engine; pixel accuracy and the mean oracle loss "
             "(pixel-wise cross entropy) against queries per image, from vertical and horizontal stripes.", ""]
    for doc in run.curves or []:
        engine = doc["engine"]
        name = f"figure4_square_{doc['model']}_{engine['name']}_{engine['precision']}.png"
        eps = doc["curves"][0]["params"]["eps"] if doc["curves"] else 0
        title = (f"{'hard-label attack' if doc.get('attack') == 'hardlabel' else 'Square Attack'} on {doc['model']} "
                 f"({engine['name']} {engine['precision']}), eps {eps:g}/255, {doc['n_images']} images")
        plot_square_curves({f"{c['params']['init']} init": c["points"] for c in doc["curves"]}, out / name, title,
                           doc["clean_pixel_accuracy"])
        lines += [f"![Figure 4: {doc['model']}]({name})", ""]
    for table in suite_tables.square(run.records):
        lines += [markdown_table(table, title=True), ""]
    return lines


def _check_section(run: RecordedRun) -> list[str]:
    check = run.suite.get("suite", {}).get("check", {})
    options = f"--tolerance {check.get('tolerance', 1.0):g}" + "".join(
        f" --attack-tolerance {attack}={points:g}" for attack, points in check.get("attack_tolerance", {}).items())
    return ["## Regression gate", "",
            "Compare this run with a committed baseline (exit 0 within tolerance, 1 on a regression, 2 on missing "
            "or mismatching records), with the suite's tolerances:", "",
            "```bash", f"python -m harness check --baseline baseline.json --results {run.directory}/results.json "
            f"{options}", "```", ""]
