"""Run a robustness suite: train what is missing, export, run every experiment, write the run directory.

:func:`run_suite` calls the library (training, the engine factory, ``harness.transfer``, the black-box attacks),
never the CLI. What it writes to the run directory ``DIR`` (each file atomically):

- ``results.json``: every record (DESIGN.md schema), one per key; each carries ``experiments``, the
  experiments it belongs to (``deployment``, ``table1``, ``sweep``, ``transfer``, ``square``), and every
  adversarial record has the clean record of the same images, engine and precision beside it. A record of
  a user's target (``[[targets]]``) has ``model`` = the table's name and ``target`` = the target's
  ``describe()`` (kind, file, sha256, card): the gate compares it by name like a built-in model's;
- ``suite.json``: the suite as run (its validated configuration), the phases' times, the models trained,
  the targets (``targets``: name -> describe()) and what did not apply to them (``skipped``: model,
  experiment, engine/precision where it is a deployment pair, and the reason);
- ``data/pgd_sweep.json``, ``data/square_curves.json``, ``data/examples.npz`` (+ ``data/examples.json``):
  what the figures are drawn from, so that ``python -m harness report DIR`` needs no model.

Everything expensive is cached (checkpoints, exported artifacts, adversarial examples, black-box runs), so a
second run with the same suite only re-scores stored examples.
"""

from __future__ import annotations

import hashlib
import json
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
from harness.attacks.blackbox_attacks import title
from harness.data import SegmentationData, load_data
from harness.fileio import atomic_path, check_output_dir, check_outputs, write_json_atomic
from harness.suite.config import SuiteConfig
from harness.suite.progress import Phase, SuiteProgress
from harness.suite.square import SquareSubject, builtin_subjects, run_square
from harness.suite.training import ensure_models, missing_models, planned_models
from harness.suite.user_targets import (
    OpenTarget,
    Skip,
    engine_opener,
    in_table,
    open_targets,
    own_pair,
    target_pairs,
)
from harness.suite.whitebox import (
    defended_eps_attacks,
    example_arrays,
    gradients,
    run_whitebox,
    sweep_attacks,
    table1_attacks,
)
from harness.threads import set_threads
from harness.training import StepReport, TrainConfig
from harness.transfer import (
    EngineChoice,
    LoadedModel,
    TransferSettings,
    check_engines,
    engine_choices,
    engine_scores,
    parse_attacks,
    run_transfer,
)
from reports.regression import record_key
from reports.results import make_record, write_results

CRAFT_DEVICE = "cpu"  # white-box crafting runs on the CPU: its examples are then the same on every machine


@dataclass
class SuiteRun:
    """A finished run: its directory, records, total seconds and the seconds of each phase."""

    out_dir: Path
    records: list[dict[str, Any]]
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)
    trained: list[str] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


@dataclass
class TargetPlan:
    """What runs on the suite's user targets: the deployment pairs of each, the black-box attack's ([square])
    engine and precision of each target it applies to, and everything that does not apply, with its reason."""

    targets: list[OpenTarget]
    pairs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    square: dict[str, tuple[str, str]] = field(default_factory=dict)
    skipped: list[Skip] = field(default_factory=list)

    def every_pair(self) -> set[tuple[str, str]]:
        """Every (engine, precision) a user target runs on."""
        return {p for pairs in self.pairs.values() for p in pairs} | set(self.square.values())


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
    d = config.data
    val = load_data(d.source, "val", d.root, d.image_size, d.seed, mask_format=d.mask_format)
    where = Path(config.source).name
    plan = _plan_targets(config, open_targets(config.targets, val, where))  # one that does not fit: before any work
    _check_engines(config, plan, where)
    train = load_data(d.source, "train", d.root, d.image_size, d.seed, config.models.n_train, d.mask_format) \
        if config.models.all_names else None
    calibration = load_data(d.source, "train", d.root, d.image_size, d.seed, config.deployment.calibration_images,
                            d.mask_format) if _needs_int8(config, plan) else None
    settings = TransferSettings(size=config.models.size, batch_size=config.batch_size, device=CRAFT_DEVICE,
                                engine_device=config.deployment.device, calibration=calibration)
    trained = [] if train is None else missing_models(config.models, train)
    builtin: dict[str, LoadedModel] = {}
    if train is not None:  # a suite of [[targets]] only trains nothing
        with progress.phase("models", f"Models: {len(trained)} to train, "
                                      f"{len(config.models.all_names) - len(trained)} cached") as phase:
            builtin = _models(config, train, val, trained, phase)
    # The torch targets beside the built-in models: white-box attacks and transfer crafting take both alike.
    models: dict[str, LoadedModel] = {**builtin, **{t.name: t.loaded for t in plan.targets if t.loaded is not None}}
    with progress.phase("export", "Exported artifacts") as phase:
        if builtin:
            _export(config, builtin, val, calibration, phase)
        if plan.targets:
            _export_targets(plan, calibration, phase)
    records: list[dict[str, Any]] = []
    if plan.targets:
        records += _deployment(config, plan, val, calibration, progress)
    sets = {}
    wb = config.whitebox
    white_box = [name for name in config.white_box_names if name in models]
    if wb is not None:
        attacks = {name: table1_attacks(wb, name) for name in white_box}
        with progress.phase("table1", f"Table 1: white-box attacks on {wb.n_images} images") as phase:
            outcome = run_whitebox(models, attacks, val.subset(wb.n_images), replace(settings, seed=wb.seed),
                                   "table1", _work(phase, "gradients", "crafting", _total(attacks, wb.n_images)))
        records += _with_target_fields(outcome.records, plan)
        sets = outcome.sets
        defended = config.models.defended
        if wb.defended_eps and defended is not None:
            by_eps = defended_eps_attacks(wb)
            with progress.phase("defended_eps", f"Defended model: {', '.join(wb.defended_columns)} at eps "
                                                f"{', '.join(f'{e:g}' for e in wb.defended_eps)}") as phase:
                on_work = _work(phase, "gradients", "crafting",
                                sum(gradients(a, wb.n_images) for a in by_eps.values()))
                for eps_attacks in by_eps.values():  # the radius of Table 1 reads its examples back
                    outcome = run_whitebox(models, {defended.name: eps_attacks}, val.subset(wb.n_images),
                                           replace(settings, seed=wb.seed), "defended_eps", on_work)
                    records += outcome.records
    if config.sweep is not None:
        sw = config.sweep
        attacks = {name: sweep_attacks(sw) for name in (*sw.models, *(n for n in white_box if n not in builtin))}
        with progress.phase("sweep", f"Figure 3: PGD sweep on {sw.n_images} images") as phase:
            outcome = run_whitebox(models, attacks, val.subset(sw.n_images), replace(settings, seed=sw.seed),
                                   "sweep", _work(phase, "gradients", "crafting", _total(attacks, sw.n_images)))
        sweep_records = _with_target_fields(outcome.records, plan)
        records += sweep_records
        _write_sweep(out_dir, config, sweep_records)
    if config.examples is not None:
        ex = config.examples
        model, source = models[ex.model]
        example_set = sets[ex.model, ex.attack]
        _write_examples(out_dir, example_arrays(model, source, example_set, val, ex.n_images), ex.model,
                        example_set.attack, val)
    if config.transfer is not None:
        records += _transfer(config, models, plan, val, settings, progress)
    if config.square is not None:
        sq = config.square
        subjects = builtin_subjects(builtin, sq, val.subset(sq.n_images), config.deployment.device, calibration)
        subjects += _square_subjects(plan, val.subset(sq.n_images), config.deployment.device, calibration)
        with progress.phase("square", f"Figure 4: {title(sq.attack)} on {sq.n_images} images") as phase:
            phase.add("queries", sq.attack, len(subjects) * len(sq.inits) * sq.n_images * sq.queries, "queries")
            done: dict[str, int] = {}

            def on_progress(description: str, spent: int, total: int) -> None:
                done[description] = spent
                phase.update("queries", completed=sum(done.values()), description=description)

            outcome = run_square(subjects, sq, val.subset(sq.n_images), config.batch_size, on_progress)
        records += outcome.records
        write_json_atomic(out_dir / "data" / "square_curves.json", {"curves": outcome.curves})
    _remove_stale(out_dir, config)
    records = merge_records(records)
    records = _with_defence_fields(records, config, builtin)
    write_results(out_dir / "results.json", records)
    seconds = round(time.perf_counter() - start, 1)
    run = SuiteRun(out_dir, records, seconds, dict(progress.seconds), trained, plan.skipped)
    write_json_atomic(out_dir / "suite.json", {
        "harness_version": __version__, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "suite": config.as_dict(), "seconds": seconds, "phases": run.phases, "trained": trained,
        "models": {name: {"size": source["size"], "checkpoint": source["checkpoint"], "sha256": source["sha256"],
                          "train": source.get("train"), "val_metrics": source.get("val_metrics")}
                   for name, (_, source) in builtin.items()},
        "targets": {t.name: t.target.describe() for t in plan.targets},
        "skipped": [skip.as_dict() for skip in plan.skipped]})
    return run


def _plan_targets(config: SuiteConfig, targets: list[OpenTarget]) -> TargetPlan:
    """Which deployment pairs, white-box experiments and Square engine apply to each target, and why not."""
    plan = TargetPlan(targets)
    deployment = config.deployment.pairs()
    for target in targets:
        name = target.name
        plan.pairs[name], skipped = target_pairs(target, deployment, "deployment")
        plan.skipped += skipped
        scores = target.target.card.has_scores
        no_scores = "its output is a class map (card output.kind = class_map): it has no scores"
        if not target.target.white_box or not scores:
            if not target.target.white_box:
                reason = (f"white-box attacks need the PyTorch model; {name} is {_kind_words(target)}: [square] "
                          "and [transfer] attack it")
            else:
                reason = no_scores + " to take gradients of"
            for experiment in ("table1", "sweep"):
                if getattr(config, "whitebox" if experiment == "table1" else experiment) is not None:
                    plan.skipped.append(Skip(name, experiment, reason))
            if config.transfer is not None and target.target.white_box:
                plan.skipped.append(Skip(name, "transfer (as a source)", reason))
        if config.square is not None:
            if not scores and config.square.reads_scores:
                plan.skipped.append(Skip(name, "square", no_scores + " for a score-based attack to read (a "
                                                         "hard-label attack applies: [square] attack = "
                                                         "\"hardlabel\")"))
            else:
                wanted = (config.square.engine, config.square.precision)
                kept, _ = target_pairs(target, [wanted], "square")
                plan.square[name] = wanted if wanted in kept else own_pair(target)
    return plan


def _with_defence_fields(records: list[dict[str, Any]], config: SuiteConfig, builtin: Mapping[str, LoadedModel]
                         ) -> list[dict[str, Any]]:
    """``records`` with the defended model's ``adversarial_training`` field (the model it was built from, its PGD
    training and epochs as its checkpoint records them): what its record name stands for."""
    defended = config.models.defended
    if defended is None or defended.name not in builtin:
        return records
    train = builtin[defended.name][1]["train"]
    fields = {"adversarial_training": {"model": defended.model, **train["adversarial"], "epochs": train["epochs"]}}
    return [{**r, **fields} if r["model"] == defended.name else r for r in records]


def _kind_words(target: OpenTarget) -> str:
    return {"onnx": "an ONNX file", "plan": "a TensorRT plan"}.get(target.target.kind, target.target.kind)


def _with_target_fields(records: list[dict[str, Any]], plan: TargetPlan) -> list[dict[str, Any]]:
    """``records`` with each user target's fields (``target``: describe(), its file's sha256)."""
    fields = {t.name: t.fields() for t in plan.targets}
    return [{**r, **fields[r["model"]]} if r["model"] in fields else r for r in records]


def _deployment(config: SuiteConfig, plan: TargetPlan, val: SegmentationData,
                calibration: SegmentationData | None, progress: SuiteProgress) -> list[dict[str, Any]]:
    """The clean evaluation of every user target on each of its deployment pairs (experiment ``deployment``)."""
    data = val.subset(config.deployment.n_images)
    images, labels = data.tensors(slice(None))[0].numpy(), data.labels
    records = []
    total = sum(len(pairs) for pairs in plan.pairs.values()) * len(data)
    with progress.phase("deployment", f"Your targets: clean evaluation on {len(data)} images") as phase:
        phase.add("images", "evaluating", total, "images")
        for target in plan.targets:
            for engine_name, precision in plan.pairs[target.name]:
                open_engine = engine_opener(target, engine_name, precision, config.deployment.device, data,
                                            calibration, config.batch_size)
                with open_engine() as engine:
                    scores, seconds = engine_scores(engine, images, labels, data.num_classes, config.batch_size)
                    records.append(make_record(
                        model=target.name, engine=engine_name, precision=precision, attack="none", params={},
                        n_images=len(data), scores=scores, queries=len(data), seconds=seconds, **target.fields(),
                        data=data.describe(), engine_info=engine.info.as_dict(), experiments=["deployment"]))
                phase.advance("images", len(data), f"{target.name} on {engine_name} {precision}")
    return records


def _square_subjects(plan: TargetPlan, data: SegmentationData, device: str | None,
                     calibration: SegmentationData | None) -> list[SquareSubject]:
    subjects = []
    for target in plan.targets:
        if target.name not in plan.square:
            continue
        engine, precision = plan.square[target.name]
        identity = target.loaded[1]["sha256"] if target.loaded is not None else _file_identity(target)
        subjects.append(SquareSubject(target.name, None, identity, engine, precision,
                                      engine_opener(target, engine, precision, device, data, calibration),
                                      target.fields()))
    return subjects


def _file_identity(target: OpenTarget) -> str:
    """An ONNX file's or plan's sha256 with its card: what a saved Square run of it must match."""
    doc = {"sha256": target.target.sha256, "card": target.target.card.as_dict()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


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


def _check_engines(config: SuiteConfig, plan: TargetPlan, where: str) -> None:
    """Fail before any training when an engine of the suite cannot run here (the factory's one-line reason,
    after the table of the target that needs it)."""
    pairs = set(config.deployment.pairs()) if config.transfer is not None else set()
    if config.square is not None and config.square.models:
        pairs.add((config.square.engine, config.square.precision))
    check_engines([EngineChoice(engine, precision) for engine, precision in sorted(pairs)], config.deployment.device)
    for target in plan.targets:
        needed = {*plan.pairs[target.name], *([plan.square[target.name]] if target.name in plan.square else [])}
        with in_table(target.spec, where):
            check_engines([EngineChoice(engine, precision) for engine, precision in sorted(needed)],
                          config.deployment.device)


def _needs_int8(config: SuiteConfig, plan: TargetPlan) -> bool:
    deployment_int8 = config.transfer is not None and any(p == "int8" for _, p in config.deployment.pairs())
    builtin_square = config.square is not None and config.square.models and config.square.precision == "int8"
    user = any(precision == "int8" for _, precision in plan.every_pair())
    return deployment_int8 or bool(builtin_square) or user


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
    configs = {plan.name: plan.config for plan in planned_models(config.models, train)}
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


def _export_targets(plan: TargetPlan, calibration: SegmentationData | None, phase: Phase) -> None:
    """Make (or find in the cache) the fp16 and int8 ONNX variants of the user's ONNX files the suite runs."""
    from exporters.user_variants import user_onnx_variant

    wanted = sorted({(t.name, p) for t in plan.targets if t.target.kind == "onnx"
                     for _, p in plan.pairs[t.name] + ([plan.square[t.name]] if t.name in plan.square else [])})
    by_name = {t.name: t for t in plan.targets}
    phase.add("variants", "your ONNX files' variants", len(wanted), "artifacts")
    for name, precision in wanted:
        artifact = user_onnx_variant(by_name[name].target, precision, calibration if precision == "int8" else None)
        phase.advance("variants", 1, f"{name} {precision} ({'cached' if artifact.reused else 'built'})")


def _transfer(config: SuiteConfig, models: Mapping[str, LoadedModel], plan: TargetPlan, val: SegmentationData,
              settings: TransferSettings, progress: SuiteProgress) -> list[dict[str, Any]]:
    """Table 2 and the deployment gap: the built-in sources and the torch targets craft; the built-in targets
    run every deployment pair, each user target its own pairs (one ``run_transfer`` call each: the examples
    are crafted once, then read from the store)."""
    tr = config.transfer
    assert tr is not None
    attacks = parse_attacks(",".join(tr.attacks), tr.eps)
    choices: list[EngineChoice] = engine_choices(config.deployment.engines, config.deployment.precisions)
    torch_sources = [t.name for t in plan.targets if t.loaded is not None and t.target.card.has_scores]
    sources = [*tr.sources, *torch_sources]
    runs = [(list(tr.targets), choices)] if tr.targets else []
    runs += [([t.name], [EngineChoice(*pair) for pair in plan.pairs[t.name]]) for t in plan.targets]
    # A user's ONNX file or plan is evaluated as a Target; a torch target through its loaded module (in models).
    user = {t.name: t.target for t in plan.targets if t.loaded is None}
    n_sets = len(sources) * len(attacks)
    evaluations = sum(len(targets) * len(run_choices) for targets, run_choices in runs)
    with progress.phase("transfer", f"Table 2 and deployment gap: {len(sources)} sources x "
                                    f"{len(tr.targets) + len(plan.targets)} targets, {tr.n_images} images") as phase:
        phase.add("gradients", "crafting", len(sources) * gradients(attacks, tr.n_images), "gradients")
        phase.add("images", "evaluating", evaluations * (1 + n_sets) * tr.n_images, "images")
        crafted = False

        def on_work(kind: str, what: str, n: int) -> None:
            if kind != "gradients":
                phase.advance("images", n, what)
            elif not crafted:  # later calls read the same examples back from the store
                phase.advance("gradients", n, what)

        records: list[dict[str, Any]] = []
        for targets, run_choices in runs:
            result = run_transfer(models, sources, targets, run_choices, attacks, val.subset(tr.n_images),
                                  replace(settings, seed=tr.seed), on_work,
                                  target_models={name: user[name] for name in targets if name in user})
            crafted = True
            records += result.records
    described = {t.name: t.target.describe() for t in plan.targets}
    records = [{**r, "source_target": described[r["source_model"]]} if r.get("source_model") in described else r
               for r in _with_target_fields(records, plan)]
    return [{**record, "experiments": ["transfer"]} for record in records]


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
