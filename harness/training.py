"""Supervised training of a segmentation model on a SegmentationData split."""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.attacks.evaluation import batch_seed
from harness.attacks.pgd import PGD
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

# Adversarial training's PGD: at most this many steps per batch (each costs a forward and backward pass).
MAX_ADVERSARIAL_STEPS = 100


@dataclass(frozen=True)
class AdversarialTraining:
    """PGD adversarial training (Madry et al. 2018): every batch's images are replaced by PGD-``steps`` examples
    at radius ``eps`` (0-255 scale), step size 2.5 ε / steps, from a random start in the ε-ball."""

    steps: int
    eps: float
    attack: str = "pgd"

    def __post_init__(self) -> None:
        if not is_integer(self.steps) or not 1 <= self.steps <= MAX_ADVERSARIAL_STEPS:
            raise HarnessError(f"adversarial training steps must be an integer from 1 to {MAX_ADVERSARIAL_STEPS}, "
                               f"got {self.steps!r}")
        if not is_finite_number(self.eps) or not 0 < self.eps <= 255:
            raise HarnessError(f"adversarial training eps must be a number in (0, 255] (8 means 8/255), "
                               f"got {self.eps!r}")
        if self.attack != "pgd":
            raise HarnessError(f"adversarial training supports pgd only, got {self.attack!r}")

    @property
    def alpha(self) -> float:
        return 2.5 * self.eps / self.steps

    @property
    def tag(self) -> str:
        """What names a defended checkpoint beside the undefended one: ``adv-pgd3-eps8``."""
        return f"adv-{self.attack}{self.steps}-eps{self.eps:g}"

    def as_dict(self) -> dict[str, Any]:
        """The checkpoint metadata's ``train.adversarial``."""
        return {"attack": self.attack, "steps": self.steps, "eps": float(self.eps), "alpha": self.alpha,
                "random_start": True}

    def attack_on(self) -> PGD:
        return PGD(self.eps, self.steps, alpha=self.alpha, random_start=True)


def parse_adversarial(text: str, eps: float) -> AdversarialTraining:
    """``pgd-K`` (or ``pgdK``) and ε -> AdversarialTraining; HarnessError naming the accepted form otherwise."""
    match = re.fullmatch(r"pgd-?(\d{1,9})", text.strip()) if isinstance(text, str) else None
    if match is None:
        raise HarnessError(f"--adversarial {text!r}: expected pgd-K, e.g. pgd-3 (PGD with K steps, "
                           f"1-{MAX_ADVERSARIAL_STEPS})")
    return AdversarialTraining(int(match[1]), eps)


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
          on_step: Callable[[StepReport], None] | None = None,
          adversarial: AdversarialTraining | None = None) -> None:
    """Train ``model`` in place with AdamW and a one-cycle schedule; leaves it in eval mode.

    Augmentation is a random horizontal flip. The loss is cross entropy over non-ignored pixels.
    Deterministic for a given seed on one machine and thread count.

    With ``adversarial``, each (flipped) batch is replaced by its PGD examples before the weight update.
    The attack runs with the model in eval mode and the update in train mode: the attack's K forward passes
    then leave the BatchNorm running statistics alone (in train mode each of them would move the statistics
    towards an intermediate iterate, K times per step) and draw no dropout noise, so PGD ascends the loss of the
    deterministic network that is deployed and attacked at test time; the update's one forward pass in train
    mode updates the statistics with the adversarial batch it trains on. Each step's PGD has its own seed
    (from ``config.seed`` and the step), so the global random streams (flips, dropout) are those of standard
    training.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    steps_per_epoch = math.ceil(len(data) / config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.15)
    pgd = adversarial.attack_on() if adversarial is not None else None
    model.train()
    for epoch in range(config.epochs):
        order = rng.permutation(len(data))
        for step in range(steps_per_epoch):
            images, labels = data.tensors(np.sort(order[step * config.batch_size:(step + 1) * config.batch_size]))
            flip = torch.from_numpy(rng.random(len(images)) < 0.5)
            images[flip] = images[flip].flip(-1)
            labels[flip] = labels[flip].flip(-1)
            if pgd is not None:
                model.eval()
                images = pgd(model, images, labels, seed=batch_seed(config.seed, epoch * steps_per_epoch + step)
                             ).images
                model.train()
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
                   on_step: Callable[[StepReport], None] | None = None,
                   adversarial: AdversarialTraining | None = None) -> tuple[Scores, float]:
    """Build, train, validate and checkpoint registry model ``name``; returns (val scores, train seconds).
    ``adversarial``: PGD adversarial training (see :func:`train`), recorded as the metadata's
    ``train.adversarial`` (absent for standard training, so older checkpoints read the same)."""
    torch.manual_seed(config.seed)  # the initial weights are part of what the seed fixes
    model = build_model(name, train_data.num_classes, size)
    if backbone_weights:
        load_weights(model, name, backbone_weights)
    start = time.perf_counter()
    train(model, train_data, config, on_step, adversarial)
    seconds = time.perf_counter() - start
    scores = evaluate(model, val_data)
    ident = {k: v for k, v in train_data.describe().items() if k not in ("split", "n")}
    save_checkpoint(path, model, {
        "model": name, "size": size, "class_names": train_data.class_names, "data": ident,
        "data_key": data_key(train_data), "input_size": list(train_data.image_size),
        "train": {**asdict(config), "seconds": round(seconds, 1), "n_images": len(train_data),
                  "backbone_weights": backbone_weights,
                  **({"adversarial": adversarial.as_dict()} if adversarial is not None else {})},
        "val_metrics": {"pixel_accuracy": scores.pixel_accuracy, "mean_iou": scores.mean_iou,
                        "per_class_iou": scores.per_class_iou, "n_images": len(val_data)},
    })
    return scores, seconds
