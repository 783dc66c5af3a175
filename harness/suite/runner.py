"""Run a robustness suite: train what is missing, export, run every experiment, write the run directory.

:func:`run_suite` calls the library (training, the engine factory, ``harness.transfer``, the Square Attack),
never the CLI. What it writes to the run directory ``DIR`` (each file atomically):

- ``results.json``: every record (DESIGN.md schema), one per key; each carries ``experiments``, the
  experiments it belongs to (``table1``, ``sweep``, ``transfer``, ``square``), and every adversarial
  record has the clean record of the same images, engine and precision beside it;
- ``suite.json``: the suite as run (its validated configuration), the phases' times, the models trained;
- ``data/pgd_sweep.json``, ``data/square_curves.json``, ``data/examples.npz`` (+ ``data/examples.json``):
  what the figures are drawn from, so that ``python -m harness report DIR`` needs no model.

Everything expensive is cached (checkpoints, exported artifacts, adversarial examples, Square runs), so a
second run with the same suite only re-scores stored examples.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines.factory import artifact_for
from harness import __version__
from harness.data import SegmentationData, load_data
from harness.fileio import atomic_path, check_output_dir, check_outputs, write_json_atomic
from harness.suite.config import SuiteConfig
from harness.suite.progress import Phase, SuiteProgress
from harness.suite.square import run_square
from harness.suite.training import ensure_models, missing_models, train_config
from harness.suite.whitebox import example_arrays, gradients, run_whitebox, sweep_attacks, table1_attacks
from harness.threads import set_threads
from harness.training import StepReport, TrainConfig
from harness.transfer import (
    EngineChoice,
    LoadedModel,
    TransferSettings,
    check_engines,
    engine_choices,
    parse_attacks,
    run_transfer,
)
from reports.regression import record_key
from reports.results import write_results

CRAFT_DEVICE = "cpu"  # white-box crafting runs on the CPU: its examples are then the same on every machine


@dataclass
class SuiteRun:
    """A finished run: its directory, records, total seconds and the seconds of each phase."""

    out_dir: Path
    records: list[dict[str, Any]]
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)
    trained: list[str] = field(default_factory=list)


# What a run writes into its directory, relative to it (see the module docstring and reports.suite_report).
RUN_DIRS = ("data", "report")
RUN_FILES = ("results.json", "suite.json", "data/pgd_sweep.json", "data/square_curves.json", "data/examples.npz",
             "data/examples.json", "report/report.md")


def check_run_dir(out_dir: str | Path, option: str) -> Path:
    """Fail with one line, before any work, when the run directory or a file a run writes into it cannot be
    written (a file where a directory belongs, a read-only place, a name too long...); ``option`` names the
    setting that chose the directory in the message."""
    out = check_output_dir(out_dir, option)
    check_outputs({f"{option} ({name})": out / name for name in RUN_FILES},
                  {f"{option} ({name}/)": out / name for name in RUN_DIRS})
    return out


def run_suite(config: SuiteConfig, out_dir: str | Path, progress: SuiteProgress) -> SuiteRun:
    """Run every experiment of ``config`` and write ``out_dir`` as the module docstring says.

    Raises HarnessError (one line) before any work when an engine of the suite cannot run here or
    ``out_dir`` cannot be written (:func:`check_run_dir`).
    """
    check_run_dir(out_dir, "run directory")
    threads = torch.get_num_threads()
    try:
        set_threads(config.threads or None)  # the suite's own setting wins over OMP_NUM_THREADS and the default
        return _run(config, Path(out_dir), progress)
    finally:
        torch.set_num_threads(threads)  # the caller's setting, e.g. in a test session


def _run(config: SuiteConfig, out_dir: Path, progress: SuiteProgress) -> SuiteRun:
    start = time.perf_counter()
    _check_engines(config)
    d = config.data
    val = load_data(d.source, "val", d.root, d.image_size, d.seed)
    train = load_data(d.source, "train", d.root, d.image_size, d.seed, config.models.n_train)
    calibration = load_data(d.source, "train", d.root, d.image_size, d.seed, config.deployment.calibration_images) \
        if _needs_int8(config) else None
    settings = TransferSettings(size=config.models.size, batch_size=config.batch_size, device=CRAFT_DEVICE,
                                engine_device=config.deployment.device, calibration=calibration)
    trained = missing_models(config.models, train)
    with progress.phase("models", f"Models: {len(trained)} to train, "
                                  f"{len(config.models.names) - len(trained)} cached") as phase:
        models = _models(config, train, val, trained, phase)
    with progress.phase("export", "Exported artifacts") as phase:
        _export(config, models, val, calibration, phase)
    records: list[dict[str, Any]] = []
    sets = {}
    wb = config.whitebox
    if wb is not None:
        attacks = {name: table1_attacks(wb, name) for name in config.models.names}
        with progress.phase("table1", f"Table 1: white-box attacks on {wb.n_images} images") as phase:
            outcome = run_whitebox(models, attacks, val.subset(wb.n_images), replace(settings, seed=wb.seed),
                                   "table1", _work(phase, "gradients", "crafting", _total(attacks, wb.n_images)))
        records += outcome.records
        sets = outcome.sets
    if config.sweep is not None:
        sw = config.sweep
        attacks = {name: sweep_attacks(sw) for name in sw.models}
        with progress.phase("sweep", f"Figure 3: PGD sweep on {sw.n_images} images") as phase:
            outcome = run_whitebox(models, attacks, val.subset(sw.n_images), replace(settings, seed=sw.seed),
                                   "sweep", _work(phase, "gradients", "crafting", _total(attacks, sw.n_images)))
        records += outcome.records
        _write_sweep(out_dir, config, outcome.records)
    if config.examples is not None:
        ex = config.examples
        model, source = models[ex.model]
        example_set = sets[ex.model, ex.attack]
        _write_examples(out_dir, example_arrays(model, source, example_set, val, ex.n_images), ex.model,
                        example_set.attack, val)
    if config.transfer is not None:
        records += _transfer(config, models, val, settings, progress)
    if config.square is not None:
        sq = config.square
        with progress.phase("square", f"Figure 4: Square Attack on {sq.n_images} images") as phase:
            phase.add("queries", "square", len(sq.models) * len(sq.inits) * sq.n_images * sq.queries, "queries")
            done: dict[str, int] = {}

            def on_progress(description: str, spent: int, total: int) -> None:
                done[description] = spent
                phase.update("queries", completed=sum(done.values()), description=description)

            outcome = run_square(models, sq, val.subset(sq.n_images), config.deployment.device, calibration,
                                 config.batch_size, on_progress)
        records += outcome.records
        write_json_atomic(out_dir / "data" / "square_curves.json", {"curves": outcome.curves})
    _remove_stale(out_dir, config)
    records = merge_records(records)
    write_results(out_dir / "results.json", records)
    seconds = round(time.perf_counter() - start, 1)
    run = SuiteRun(out_dir, records, seconds, dict(progress.seconds), trained)
    write_json_atomic(out_dir / "suite.json", {
        "harness_version": __version__, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "suite": config.as_dict(), "seconds": seconds, "phases": run.phases, "trained": trained,
        "models": {name: {"size": source["size"], "checkpoint": source["checkpoint"], "sha256": source["sha256"],
                          "train": source.get("train"), "val_metrics": source.get("val_metrics")}
                   for name, (_, source) in models.items()}})
    return run


def merge_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per regression key, in first-seen order; a repeated key (the clean record that Table 1,
    the sweep and the transfer experiment each measure on the same images) adds its experiments to the first."""
    merged: dict[tuple[str, ...], dict[str, Any]] = {}
    for record in records:
        key = record_key(record)
        if key in merged:
            first = merged[key]
            first["experiments"] = list(dict.fromkeys(first.get("experiments", []) + record.get("experiments", [])))
        else:
            merged[key] = dict(record)
    return list(merged.values())


def _remove_stale(out_dir: Path, config: SuiteConfig) -> None:
    """Remove the data files of experiments this suite did not run, left by an earlier run into the same
    directory: the report would otherwise draw them as this run's."""
    ran = {"pgd_sweep.json": config.sweep, "square_curves.json": config.square,
           "examples.npz": config.examples, "examples.json": config.examples}
    for name, section in ran.items():
        if section is None:
            (out_dir / "data" / name).unlink(missing_ok=True)


def _check_engines(config: SuiteConfig) -> None:
    """Fail before any training when an engine of the suite cannot run here (the factory's one-line reason)."""
    pairs = set(config.deployment.pairs()) if config.transfer is not None else set()
    if config.square is not None:
        pairs.add((config.square.engine, config.square.precision))
    check_engines([EngineChoice(engine, precision) for engine, precision in sorted(pairs)], config.deployment.device)


def _needs_int8(config: SuiteConfig) -> bool:
    deployment_int8 = config.transfer is not None and any(p == "int8" for _, p in config.deployment.pairs())
    return deployment_int8 or (config.square is not None and config.square.precision == "int8")


def _total(attacks: Mapping[str, list[Any]], n_images: int) -> int:
    return sum(gradients(a, n_images) for a in attacks.values())


def _work(phase: Phase, key: str, description: str, total: int, unit: str = "gradients"):
    """A ``harness.transfer`` work callback advancing a new bar of ``phase``."""
    phase.add(key, description, total, unit)

    def on_work(kind: str, what: str, n: int) -> None:
        phase.advance(key, n, what)

    return on_work


def _models(config: SuiteConfig, train: SegmentationData, val: SegmentationData, missing: list[str],
            phase: Phase) -> dict[str, LoadedModel]:
    configs = {name: train_config(name, config.models) for name in missing}
    steps_per_epoch = -(-len(train) // config.models.batch_size)
    for name in missing:
        phase.add(name, f"train {name}", configs[name].epochs * steps_per_epoch, "steps")

    def on_step(name: str, training: TrainConfig, report: StepReport) -> None:
        phase.advance(name, 1)
        phase.update(name, status=f"epoch {report.epoch + 1}/{training.epochs} loss {report.loss:.3f} "
                                  f"acc {100 * report.pixel_accuracy:.1f}%")

    return ensure_models(config.models, train, val, on_step)


def _export(config: SuiteConfig, models: Mapping[str, LoadedModel], val: SegmentationData,
            calibration: SegmentationData | None, phase: Phase) -> None:
    """Build (or find in the cache) every artifact the suite's engines run, before the experiments use them."""
    wanted: list[tuple[str, str, str]] = []
    if config.transfer is not None:
        names = dict.fromkeys((*config.transfer.sources, *config.transfer.targets))
        wanted += [(name, e, p) for name in names for e, p in config.deployment.pairs()]
    if config.square is not None:
        wanted += [(name, config.square.engine, config.square.precision) for name in config.square.models]
    wanted = [w for w in dict.fromkeys(wanted) if w[1] != "torch"]
    phase.add("artifacts", "export", len(wanted), "artifacts")
    for name, engine, precision in wanted:
        model, source = models[name]
        artifact = artifact_for(engine, model, source, val, precision=precision,
                                calibration=calibration if precision == "int8" else None)
        assert artifact is not None
        phase.advance("artifacts", 1, f"{name} {engine} {precision} ({'cached' if artifact.reused else 'built'})")


def _transfer(config: SuiteConfig, models: Mapping[str, LoadedModel], val: SegmentationData,
              settings: TransferSettings, progress: SuiteProgress) -> list[dict[str, Any]]:
    tr = config.transfer
    assert tr is not None
    attacks = parse_attacks(",".join(tr.attacks), tr.eps)
    choices: list[EngineChoice] = engine_choices(config.deployment.engines, config.deployment.precisions)
    n_sets = len(tr.sources) * len(attacks)
    with progress.phase("transfer", f"Table 2 and deployment gap: {len(tr.sources)} sources x {len(tr.targets)} "
                                    f"targets x {len(choices)} engines, {tr.n_images} images") as phase:
        phase.add("gradients", "crafting", len(tr.sources) * gradients(attacks, tr.n_images), "gradients")
        phase.add("images", "evaluating", len(tr.targets) * len(choices) * (1 + n_sets) * tr.n_images, "images")

        def on_work(kind: str, what: str, n: int) -> None:
            phase.advance("gradients" if kind == "gradients" else "images", n, what)

        result = run_transfer(models, tr.sources, tr.targets, choices, attacks, val.subset(tr.n_images),
                              replace(settings, seed=tr.seed), on_work)
    return [{**record, "experiments": ["transfer"]} for record in result.records]


def _write_sweep(out_dir: Path, config: SuiteConfig, records: list[dict[str, Any]]) -> None:
    sw = config.sweep
    assert sw is not None
    write_json_atomic(out_dir / "data" / "pgd_sweep.json", {
        "eps": sw.eps, "steps": list(sw.steps), "alpha": "eps / steps", "n_images": sw.n_images,
        "records": records})


def _write_examples(out_dir: Path, arrays: dict[str, np.ndarray], model: str, attack: Any,
                    data: SegmentationData) -> None:
    """The arrays of the example figures (data/examples.npz, nothing pickled) and what they show (examples.json)."""
    with atomic_path(out_dir / "data" / "examples.npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    write_json_atomic(out_dir / "data" / "examples.json", {
        "model": model, "attack": attack.name, "label": attack.label, "params": attack.params(),
        "eps": attack.eps, "class_names": data.class_names, "data": data.describe(),
        "n_images": len(arrays["clean"])})
