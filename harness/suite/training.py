"""The suite's models: train the missing checkpoints, then load every model with its provenance.

A model trained with ``train``'s default schedule lives at ``train``'s default checkpoint path, so
``python -m harness train --all`` and the suite share checkpoints. A suite that overrides the
training (epochs, learning rate, seed, batch size, training images) gets its own checkpoint file,
keyed by those settings: a short CI training never replaces, nor is mistaken for, the full one.

The defended model (``[models] defended``) is trained the same way with PGD adversarial training: its file carries
the defence's tag as ``train --adversarial`` names it (``...--adv-pgd2-eps4``, then ``--suite-TAG`` when the suite
overrides the schedule), and a cached file is used only when its recorded ``train.adversarial`` is this one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness import distributed
from harness.checkpoints import (
    cached_checkpoint_problem,
    default_checkpoint_path,
    load_cached_checkpoint,
    load_checkpoint,
)
from harness.commands.train import DEFAULT_SCHEDULE, cached_training_problem
from harness.data import SegmentationData, data_key
from harness.fileio import build_lock, sha256_file
from harness.models.normalize import SegmentationModel
from harness.suite.config import DefendedSpec, ModelsSpec
from harness.training import AdversarialTraining, StepReport, TrainConfig, train_and_save


@dataclass(frozen=True)
class PlannedModel:
    """One model the suite loads: ``name`` in the records, ``model`` the registry model it builds, its training
    (``adversarial`` None: standard) and its checkpoint file."""

    name: str
    model: str
    config: TrainConfig
    adversarial: AdversarialTraining | None
    path: Path


def train_config(name: str, spec: ModelsSpec) -> TrainConfig:
    """The training of ``name``: train's default schedule with the suite's overrides."""
    epochs, lr = DEFAULT_SCHEDULE[name]
    return TrainConfig(epochs=spec.epochs.get(name, epochs), batch_size=spec.batch_size, lr=spec.lr.get(name, lr),
                       seed=spec.seed)


def defended_config(defended: DefendedSpec, spec: ModelsSpec) -> TrainConfig:
    """The defended model's training: train's default schedule of its model with its own epochs and lr, and the
    suite's seed and batch size."""
    epochs, lr = DEFAULT_SCHEDULE[defended.model]
    return TrainConfig(epochs=defended.epochs or epochs, batch_size=spec.batch_size, lr=defended.lr or lr,
                       seed=spec.seed)


def checkpoint_path(name: str, spec: ModelsSpec, train_data: SegmentationData) -> Path:
    """train's default path when the suite trains as ``train`` does by default, else a path keyed by the settings."""
    return _path(name, train_config(name, spec), None, spec, train_data)


def _path(model: str, config: TrainConfig, adversarial: AdversarialTraining | None, spec: ModelsSpec,
          train_data: SegmentationData) -> Path:
    path = default_checkpoint_path(model, spec.size, data_key(train_data), adversarial.tag if adversarial else "")
    epochs, lr = DEFAULT_SCHEDULE[model]
    if config == TrainConfig(epochs=epochs, lr=lr) and spec.n_train is None:
        return path
    settings = {**asdict(config), "n_train": spec.n_train}
    if adversarial is not None:  # already in the file name; in the key too, so that no two trainings share it
        settings["adversarial"] = adversarial.as_dict()
    tag = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return path.with_name(f"{path.stem}--suite-{tag}{path.suffix}")


def planned_models(spec: ModelsSpec, train_data: SegmentationData) -> list[PlannedModel]:
    """Every model of ``spec`` in load order: ``names``, then the defended model."""
    plans = [PlannedModel(name, name, train_config(name, spec), None, checkpoint_path(name, spec, train_data))
             for name in spec.names]
    if spec.defended is not None:
        d = spec.defended
        config, adversarial = defended_config(d, spec), d.adversarial
        plans.append(PlannedModel(d.name, d.model, config, adversarial,
                                  _path(d.model, config, adversarial, spec, train_data)))
    return plans


def _problem(plan: PlannedModel, spec: ModelsSpec, train_data: SegmentationData) -> str | None:
    """Why ``plan``'s checkpoint cannot be used (missing, damaged, another model's or another training's)."""
    if plan.adversarial is None:
        return cached_checkpoint_problem(plan.path, plan.model, spec.size, train_data.class_names)
    return cached_training_problem(plan.path, plan.model, spec.size, train_data.class_names, plan.adversarial)


def missing_models(spec: ModelsSpec, train_data: SegmentationData) -> list[str]:
    """The models of ``spec`` (record names) that have no usable checkpoint yet."""
    return [plan.name for plan in planned_models(spec, train_data) if _problem(plan, spec, train_data) is not None]


def ensure_models(spec: ModelsSpec, train_data: SegmentationData, val_data: SegmentationData,
                  on_step: Callable[[str, TrainConfig, StepReport], None] | None = None
                  ) -> dict[str, tuple[SegmentationModel, dict[str, Any]]]:
    """Every model of ``spec`` by record name as (model in eval mode, source), trained first where its checkpoint
    is missing (``on_step(name, config, report)`` reports the training). ``source`` is the checkpoint's metadata
    plus ``checkpoint`` and ``sha256``: what ``harness.commands.common.load_model`` returns and the engine
    factory and ``harness.transfer`` expect. ``train_data`` must already hold ``spec.n_train`` images."""
    loaded = {}
    for plan in planned_models(spec, train_data):
        # One process trains a missing model; the other ranks of a torchrun job wait for it and load it.
        with build_lock(plan.path), distributed.local():
            cached, problem = load_cached_checkpoint(plan.path, plan.model, spec.size, train_data.class_names)
            if problem is None and plan.adversarial is not None:
                problem = _problem(plan, spec, train_data)
            if problem is not None:
                step = None if on_step is None else (lambda report, n=plan.name, c=plan.config: on_step(n, c, report))
                train_and_save(plan.model, spec.size, train_data, val_data, plan.config, plan.path, on_step=step,
                               adversarial=plan.adversarial)
                cached = load_checkpoint(plan.path)
        model, meta = cached
        loaded[plan.name] = (model, {**meta, "checkpoint": str(plan.path), "sha256": sha256_file(plan.path)})
    return loaded
