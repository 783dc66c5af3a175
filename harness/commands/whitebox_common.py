"""What the white-box commands (attack, whitebox, sweep) share: options, device, progress, records."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from harness.attacks import Attack
from harness.attacks.evaluation import AttackEvaluation, evaluate_attack
from harness.attacks.store import save_adversarial
from harness.commands.common import add_data_arguments, console, int_in, pixel_scale, seed_int
from harness.data.base import SegmentationData
from harness.errors import HarnessError
from harness.limits import MAX_BATCH, MAX_IMAGES, MAX_SEED
from harness.models.normalize import SegmentationModel
from reports.results import make_record


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """ε, image count, batching, seed, device, JSON output and the data options."""
    parser.add_argument("--eps", type=pixel_scale, default=8.0,
                        help="L∞ radius on the 0-255 pixel scale, in (0, 255] (default 8, i.e. 8/255)")
    parser.add_argument("--split", default="val", choices=("train", "val"))
    parser.add_argument("--n-images", type=int_in(1, MAX_IMAGES), metavar="N",
                        help=f"attack the first N images, 1-{MAX_IMAGES} (default: all)")
    parser.add_argument("--batch-size", type=int_in(1, MAX_BATCH), default=16, metavar="N",
                        help=f"images per batch, 1-{MAX_BATCH} (default 16)")
    parser.add_argument("--seed", type=seed_int, default=0, metavar="SEED",
                        help=f"seed of PGD's random start, 0-{MAX_SEED} (default 0)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda if available)")
    parser.add_argument("--json", metavar="FILE", help="write results.json (README: Results schema) to FILE")
    add_data_arguments(parser)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise HarnessError(f"unknown --device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HarnessError("--device cuda, but no CUDA device is available")
    if device.type not in ("cpu", "cuda"):
        raise HarnessError(f"--device {name}: only cpu and cuda are supported")
    return device


def gradient_progress() -> Progress:
    """A progress bar counted in image gradients (forward+backward passes of one image)."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("gradients"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    return Progress(*columns, console=console, transient=False)


def run_attack(model: SegmentationModel, data: SegmentationData, attack: Attack, args: argparse.Namespace,
               progress: Progress, task: TaskID, keep_adversarial: bool = False) -> AttackEvaluation:
    """``evaluate_attack`` with the command's batching, seed and device, advancing ``task``."""
    def advance(n: int) -> None:
        progress.update(task, advance=n * attack.iterations)

    return evaluate_attack(model, data, attack, args.batch_size, args.seed, args.device,
                           keep_adversarial, advance)


def attack_records(model_name: str, source: dict[str, Any], data: SegmentationData, attack: Attack,
                   evaluation: AttackEvaluation, args: argparse.Namespace,
                   with_clean: bool = True) -> list[dict[str, Any]]:
    """The clean record of the attacked images (if ``with_clean``) and the adversarial record."""
    common = {"model": model_name, "engine": "torch", "precision": "fp32", "n_images": len(data),
              "size": args.size, "data": data.describe(), "weights_sha256": source["sha256"],
              "device": str(args.device)}
    records = []
    if with_clean:
        records.append(make_record(**common, attack="none", params={}, scores=evaluation.clean,
                                   seconds=evaluation.clean_seconds))
    records.append(make_record(**common, attack=attack.name, params={**attack.params(), "seed": args.seed},
                               scores=evaluation.attacked, queries=evaluation.queries,
                               seconds=evaluation.attack_seconds, batch_size=args.batch_size))
    return records


def save_examples(directory: str, model_name: str, source: dict[str, Any], data: SegmentationData,
                  attack: Attack, evaluation: AttackEvaluation, args: argparse.Namespace) -> Path:
    """Write the adversarial images with their provenance to ``directory``; returns the file."""
    assert evaluation.adversarial is not None
    name = f"{model_name}--{args.size}--{attack.label}--eps{attack.eps:g}--seed{args.seed}.npz"
    provenance = {"attack": attack.name, "params": attack.params(), "seed": args.seed,
                  "batch_size": args.batch_size, "device": str(args.device), "source_model": model_name,
                  "size": args.size, "checkpoint": source.get("checkpoint") or source.get("weights"),
                  "checkpoint_sha256": source["sha256"], "data": data.describe(), "torch": torch.__version__}
    return save_adversarial(Path(directory) / name, evaluation.adversarial, data.labels, data.ids, provenance)
