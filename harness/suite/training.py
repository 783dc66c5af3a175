"""The suite's models: train the missing checkpoints, then load every model with its provenance.

A model trained with ``train``'s default schedule lives at ``train``'s default checkpoint path, so
``python -m harness train --all`` and the suite share checkpoints. A suite that overrides the
training (epochs, learning rate, seed, batch size, training images) gets its own checkpoint file,
keyed by those settings: a short CI training never replaces, nor is mistaken for, the full one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.checkpoints import (
    cached_checkpoint_problem,
    default_checkpoint_path,
    load_cached_checkpoint,
    load_checkpoint,
)
from harness.commands.train import DEFAULT_SCHEDULE
from harness.data import SegmentationData, data_key
from harness.fileio import sha256_file
from harness.models.normalize import SegmentationModel
from harness.suite.config import ModelsSpec
from harness.training import StepReport, TrainConfig, train_and_save


def train_config(name: str, spec: ModelsSpec) -> TrainConfig:
    """The training of ``name``: train's default schedule with the suite's overrides."""
    epochs, lr = DEFAULT_SCHEDULE[name]
    return TrainConfig(epochs=spec.epochs.get(name, epochs), batch_size=spec.batch_size, lr=spec.lr.get(name, lr),
                       seed=spec.seed)


def checkpoint_path(name: str, spec: ModelsSpec, train_data: SegmentationData) -> Path:
    """train's default path when the suite trains as ``train`` does by default, else a path keyed by the settings."""
    path = default_checkpoint_path(name, spec.size, data_key(train_data))
    config = train_config(name, spec)
    epochs, lr = DEFAULT_SCHEDULE[name]
    if config == TrainConfig(epochs=epochs, lr=lr) and spec.n_train is None:
        return path
    settings = json.dumps({**asdict(config), "n_train": spec.n_train}, sort_keys=True)
    tag = hashlib.sha256(settings.encode()).hexdigest()[:8]
    return path.with_name(f"{path.stem}--suite-{tag}{path.suffix}")


def missing_models(spec: ModelsSpec, train_data: SegmentationData) -> list[str]:
    """The models of ``spec`` that have no usable checkpoint yet (missing, damaged, or another model's)."""
    return [name for name in spec.names if cached_checkpoint_problem(
        checkpoint_path(name, spec, train_data), name, spec.size, train_data.class_names) is not None]


def ensure_models(spec: ModelsSpec, train_data: SegmentationData, val_data: SegmentationData,
                  on_step: Callable[[str, TrainConfig, StepReport], None] | None = None
                  ) -> dict[str, tuple[SegmentationModel, dict[str, Any]]]:
    """Every model of ``spec`` as (model in eval mode, source), trained first where its checkpoint is missing
    (``on_step(name, config, report)`` reports the training). ``source`` is the checkpoint's metadata plus
    ``checkpoint`` and ``sha256``: what ``harness.commands.common.load_model`` returns and the engine
    factory and ``harness.transfer`` expect. ``train_data`` must already hold ``spec.n_train`` images."""
    loaded = {}
    for name in spec.names:
        path = checkpoint_path(name, spec, train_data)
        cached, problem = load_cached_checkpoint(path, name, spec.size, train_data.class_names)
        if problem is not None:
            config = train_config(name, spec)
            step = None if on_step is None else (lambda report, n=name, c=config: on_step(n, c, report))
            train_and_save(name, spec.size, train_data, val_data, config, path, on_step=step)
            cached = load_checkpoint(path)
        model, meta = cached
        loaded[name] = (model, {**meta, "checkpoint": str(path), "sha256": sha256_file(path)})
    return loaded
