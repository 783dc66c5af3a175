"""Supervised training of a segmentation model on a SegmentationData split."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.checkpoints import is_finite_number, is_integer, save_checkpoint
from harness.data import data_key
from harness.data.base import IGNORE_INDEX, SegmentationData
from harness.errors import HarnessError
from harness.evaluation import evaluate
from harness.limits import MAX_BATCH, MAX_EPOCHS, MAX_SEED
from harness.metrics import Scores
from harness.models import build_model
from harness.models.finite import first_non_finite
from harness.models.weights import load_weights


@dataclass
class TrainConfig:
    """Training settings; out-of-range values (a non-finite or non-positive rate, say) are a HarnessError."""

    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        for name, top in (("epochs", MAX_EPOCHS), ("batch_size", MAX_BATCH)):
            value = getattr(self, name)
            if not is_integer(value) or not 1 <= value <= top:
                raise HarnessError(f"training {name} must be an integer from 1 to {top}, got {value!r}")
        if not is_integer(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise HarnessError(f"training seed must be an integer from 0 to {MAX_SEED}, got {self.seed!r}")
        if not is_finite_number(self.lr) or not 0 < self.lr < MAX_LR:
            raise HarnessError(f"learning rate must be a finite number in (0, {MAX_LR:g}), got {self.lr!r}")
        if not is_finite_number(self.weight_decay) or not 0 <= self.weight_decay <= MAX_WEIGHT_DECAY:
            raise HarnessError(f"weight decay must be a finite number in [0, {MAX_WEIGHT_DECAY:g}], "
                               f"got {self.weight_decay!r}")


# The CLI's bound on --lr (AdamW's peak rate; useful ones are around 1e-3) and a generous one on weight decay.
MAX_LR = 1.0
MAX_WEIGHT_DECAY = 10.0


@dataclass
class StepReport:
    """What the progress display shows after each optimisation step."""

    epoch: int
    step: int
    steps_per_epoch: int
    loss: float
    pixel_accuracy: float


def train(model: nn.Module, data: SegmentationData, config: TrainConfig,
          on_step: Callable[[StepReport], None] | None = None) -> None:
    """Train ``model`` in place with AdamW and a one-cycle schedule; leaves it in eval mode.

    Augmentation is a random horizontal flip. The loss is cross entropy over non-ignored pixels.
    Deterministic for a given seed on one machine and thread count.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.15)
    model.train()
    for epoch in range(config.epochs):
        order = rng.permutation(len(data))
        for step in range(steps_per_epoch):
            images, labels = data.tensors(np.sort(order[step * config.batch_size:(step + 1) * config.batch_size]))
            flip = torch.from_numpy(rng.random(len(images)) < 0.5)
            images[flip] = images[flip].flip(-1)
            labels[flip] = labels[flip].flip(-1)
            logits = model(images)
            if bool((labels != IGNORE_INDEX).any()):
                loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
            else:  # a batch with no labelled pixel teaches nothing (the mean over no pixel would be NaN)
                loss = logits.sum() * 0.0
            if not bool(torch.isfinite(loss)):
                model.eval()
                raise HarnessError(f"training diverged: the loss is {loss.item()} at epoch {epoch + 1} step "
                                   f"{step + 1} (learning rate {config.lr:g}); lower --lr. Nothing was saved")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            bad = first_non_finite(model.named_parameters())
            if bad is not None:
                model.eval()
                raise HarnessError(f"training diverged: {bad} became NaN or infinite at epoch {epoch + 1} step "
                                   f"{step + 1} (learning rate {config.lr:g}); lower --lr. Nothing was saved")
            if on_step is not None:
                with torch.no_grad():
                    valid = labels != IGNORE_INDEX
                    correct = (logits.argmax(1) == labels) & valid
                    acc = float(correct.sum() / valid.sum().clamp(min=1))
                on_step(StepReport(epoch, step, steps_per_epoch, loss.item(), acc))
    model.eval()
    bad = first_non_finite(model.state_dict().items())  # the normalisation buffers too
    if bad is not None:
        raise HarnessError(f"training diverged: {bad} is NaN or infinite after training (learning rate "
                           f"{config.lr:g}); lower --lr. Nothing was saved")


def train_and_save(name: str, size: str, train_data: SegmentationData, val_data: SegmentationData,
                   config: TrainConfig, path: str | os.PathLike,
                   backbone_weights: str | None = None,
                   on_step: Callable[[StepReport], None] | None = None) -> tuple[Scores, float]:
    """Build, train, validate and checkpoint registry model ``name``; returns (val scores, train seconds)."""
    torch.manual_seed(config.seed)  # the initial weights are part of what the seed fixes
    model = build_model(name, train_data.num_classes, size)
    if backbone_weights:
        load_weights(model, name, backbone_weights)
    start = time.perf_counter()
    train(model, train_data, config, on_step)
    seconds = time.perf_counter() - start
    scores = evaluate(model, val_data)
    ident = {k: v for k, v in train_data.describe().items() if k not in ("split", "n")}
    save_checkpoint(path, model, {
        "model": name, "size": size, "class_names": train_data.class_names, "data": ident,
        "data_key": data_key(train_data), "input_size": list(train_data.image_size),
        "train": {**asdict(config), "seconds": round(seconds, 1), "n_images": len(train_data),
                  "backbone_weights": backbone_weights},
        "val_metrics": {"pixel_accuracy": scores.pixel_accuracy, "mean_iou": scores.mean_iou,
                        "per_class_iou": scores.per_class_iou, "n_images": len(val_data)},
    })
    return scores, seconds
