"""``train``: train registry models on a data set and cache their checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness.checkpoints import default_checkpoint_path, load_cached_checkpoint
from harness.commands.common import (
    add_data_arguments,
    console,
    data_from_args,
    err_console,
    float_in,
    int_in,
    pixel_scale,
    seed_int,
)
from harness.data import data_key
from harness.errors import HarnessError
from harness.fileio import check_outputs
from harness.limits import MAX_BATCH, MAX_EPOCHS, MAX_IMAGES, MAX_SEED
from harness.models import MODELS, SIZES
from harness.threads import set_threads
from harness.training import AdversarialTraining, StepReport, TrainConfig, parse_adversarial, train_and_save
from reports.tables import ReadableTable

HELP = "train models (default: reduced width on the built-in data) and cache their checkpoints"

# (epochs, peak learning rate) that reach >= 90 % pixel accuracy and >= 0.70 mIoU on the
# built-in data at the reduced width; the ResNets are cheap per step but slow to converge.
DEFAULT_SCHEDULE = {"fcn8s-vgg16": (10, 3e-3), "fcn16s-vgg16": (20, 3e-3),
                    "fcn-resnet50": (25, 3e-3), "fcn-resnet101": (25, 3e-3)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", choices=list(MODELS), metavar="NAME", help=f"one of: {', '.join(MODELS)}")
    which.add_argument("--all", action="store_true", help="train all four models")
    parser.add_argument("--size", default="reduced", choices=SIZES, help="reduced (default) or paper")
    parser.add_argument("--epochs", type=int_in(1, MAX_EPOCHS), metavar="N",
                        help=f"epochs, 1-{MAX_EPOCHS} (default: per model, see README)")
    parser.add_argument("--batch-size", type=int_in(1, MAX_BATCH), default=16, metavar="N",
                        help=f"images per step, 1-{MAX_BATCH} (default 16)")
    parser.add_argument("--lr", type=float_in(0, 1, open_min=True, open_max=True),
                        help="peak learning rate of the one-cycle schedule, in (0, 1) (default: per model)")
    parser.add_argument("--seed", type=seed_int, default=0, metavar="SEED",
                        help=f"training seed, 0-{MAX_SEED} (default 0)")
    parser.add_argument("--n-train", type=int_in(1, MAX_IMAGES), metavar="N",
                        help=f"train on the first N images only, 1-{MAX_IMAGES}")
    parser.add_argument("--backbone-weights", metavar="FILE",
                        help="start from published weights, e.g. torchvision's vgg16 or resnet50 .pth")
    parser.add_argument("--out", metavar="FILE", help="checkpoint path (default: the cache; one model only)")
    parser.add_argument("--force", action="store_true", help="retrain even when a checkpoint exists")
    parser.add_argument("--adversarial", metavar="pgd-K",
                        help="PGD adversarial training: each batch replaced by its PGD-K examples (step 2.5 eps/K, "
                             "random start); the checkpoint gets its own default path, beside the undefended one")
    parser.add_argument("--eps", type=pixel_scale, metavar="E",
                        help="radius of --adversarial on the 0-255 scale, in (0, 255] (default 8, i.e. 8/255)")
    add_data_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.all and args.out:
        raise HarnessError("--out names one checkpoint; use it with --model, not --all")
    if args.eps is not None and args.adversarial is None:
        raise HarnessError("--eps sets the radius of adversarial training; use it with --adversarial pgd-K")
    adversarial = parse_adversarial(args.adversarial, 8.0 if args.eps is None else args.eps) \
        if args.adversarial is not None else None
    check_outputs({"--out": args.out})
    set_threads()
    names = list(MODELS) if args.all else [args.model]
    train_data, val_data = data_from_args(args, "train", args.n_train), data_from_args(args, "val")
    summary = ReadableTable(title=f"Training on {train_data.name} ({len(train_data)} train / {len(val_data)} val "
                                  "images)")
    for col in ("model", "epochs", "time", "val pixel acc", "val mIoU", "checkpoint"):
        summary.add_column(col)
    for name in names:
        path = Path(args.out) if args.out else default_checkpoint_path(
            name, args.size, data_key(train_data), adversarial.tag if adversarial else "")
        if path.is_file() and not args.force and not args.out:
            problem = cached_training_problem(path, name, args.size, train_data.class_names, adversarial)
            if problem is None:
                summary.add_row(name, "-", "cached", "-", "-", str(path))
                continue
            err_console.print(f"note: not reusing the cached checkpoint: {problem}; retraining it",
                              highlight=False, markup=False, soft_wrap=True)
        default_epochs, default_lr = DEFAULT_SCHEDULE[name]
        config = TrainConfig(epochs=args.epochs or default_epochs, batch_size=args.batch_size,
                             lr=args.lr or default_lr, seed=args.seed)
        scores, seconds = _train_with_progress(name, args.size, train_data, val_data, config, path,
                                               args.backbone_weights, adversarial)
        summary.add_row(name, str(config.epochs), f"{seconds:.0f} s", f"{100 * scores.pixel_accuracy:.2f} %",
                        f"{scores.mean_iou:.3f}", str(path))
    console.print(summary)
    return 0


def cached_training_problem(path: Path, name: str, size: str, class_names: list[str],
                            adversarial: AdversarialTraining | None) -> str | None:
    """Why the checkpoint at ``path`` cannot stand in for this training: unusable, another model, or another
    adversarial training (or none where one is asked for); None when it can."""
    cached, problem = load_cached_checkpoint(path, name, size, class_names)
    if cached is None:
        return problem
    recorded = cached[1].get("train", {}).get("adversarial")
    wanted = adversarial.as_dict() if adversarial is not None else None
    if recorded != wanted:
        what = "standard training" if recorded is None else f"adversarial training {recorded}"
        return f"checkpoint {path} was made by {what}, not the one asked for"
    return None


def _train_with_progress(name: str, size: str, train_data, val_data, config: TrainConfig, path: Path,
                         backbone_weights: str | None, adversarial: AdversarialTraining | None):
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        steps = config.epochs * -(-len(train_data) // config.batch_size)
        task = progress.add_task(name + (f" ({adversarial.tag})" if adversarial else ""), total=steps, status="")

        def on_step(report: StepReport) -> None:
            progress.update(task, advance=1, status=(
                f"epoch {report.epoch + 1}/{config.epochs}  loss {report.loss:.3f}  "
                f"pixel acc {100 * report.pixel_accuracy:.1f}%"))

        return train_and_save(name, size, train_data, val_data, config, path, backbone_weights, on_step, adversarial)
