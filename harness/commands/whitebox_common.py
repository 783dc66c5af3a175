"""What the white-box commands (attack, whitebox, sweep) share: options, device, progress, records."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
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
from torch import nn

from harness.attacks import ATTACK_NAME_PATTERNS, Attack, parse_attack_name
from harness.attacks.evaluation import AttackEvaluation, evaluate_attack
from harness.attacks.store import save_adversarial
from harness.commands.common import add_data_arguments, console, int_in, pixel_scale, seed_int
from harness.commands.target_options import (
    WHITE_BOX_REFUSED,
    add_target_arguments,
    given_kind,
    record_fields,
    target_from_args,
    target_title,
)
from harness.data.base import SegmentationData
from harness.errors import HarnessError
from harness.fileio import file_stem
from harness.limits import MAX_BATCH, MAX_IMAGES, MAX_SEED
from harness.models import MODELS
from harness.targets.target import Target, builtin_target, torch_model
from reports.results import make_record

ATTACK_NAME_CHOICES = (*ATTACK_NAME_PATTERNS, "A+B (the worst case of several)")
MAX_ATTACK_NAME = 200  # characters of one --attack value (a worst case of several names included)


class AttackNameChoices:
    """argparse ``choices`` for an attack name: every name ``attacks_from_names`` accepts (``pgd-best-20``,
    ``apgd-mce-red-100``, ``apgd-ce+pgd-100``), checked at parse time; iterating gives the name patterns (what
    argparse lists in its "invalid choice" message)."""

    def __contains__(self, value: object) -> bool:
        return (isinstance(value, str) and 0 < len(value) <= MAX_ATTACK_NAME
                and all(parse_attack_name(part) is not None for part in value.split("+")))

    def __iter__(self) -> Iterator[str]:
        return iter(ATTACK_NAME_CHOICES)


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


def add_row_arguments(parser: argparse.ArgumentParser, default_models: list[str], help_text: str) -> None:
    """``--models NAME ...`` (built-in rows, default ``default_models``) or one target option (``--model``,
    ``--torch``, ...; an ``--onnx``/``--plan`` target is refused at run time with what applies instead)."""
    parser.add_argument("--models", nargs="+", choices=list(MODELS), metavar="NAME",
                        help=f"{help_text} (default: {', '.join(default_models)})")
    add_target_arguments(parser, required=False, refused=WHITE_BOX_REFUSED)
    parser.set_defaults(row_defaults=default_models)


def row_targets(args: argparse.Namespace, data: SegmentationData) -> list[Target]:
    """The targets the options name: one target option (``--model``, ``--torch``, ...) or the ``--models``
    (each with its cached checkpoint, at ``--size``); HarnessError when both are given or an option would be
    ignored."""
    if given_kind(args) is not None:
        if args.models is not None:
            raise HarnessError("--models and a target option (--model, --onnx, --plan, --torch) both name what to "
                               "attack; pass one of them")
        return [target_from_args(args, data)]
    for option, value in (("--checkpoint", args.checkpoint), ("--weights", args.weights), ("--card", args.card),
                          ("--card-set", args.card_set)):
        if value is not None:
            raise HarnessError(f"{option} belongs to one target: pass it with --model NAME or --torch MODULE:CALLABLE "
                               "instead of --models")
    names = args.models or args.row_defaults
    return [builtin_target(name, args.size or "reduced", None, None, data) for name in dict.fromkeys(names)]


def load_rows(targets: list[Target], data: SegmentationData) -> list[tuple[Target, nn.Module, dict[str, Any]]]:
    """Each target's white-box model and source (all loaded before any attack runs: a missing checkpoint or a
    target without a PyTorch model stops the command before the work)."""
    return [(target, *torch_model(target, data)) for target in targets]


def rows_title(targets: list[Target]) -> str:
    """``reduced models`` for built-in rows of one size, else the targets' titles."""
    sizes = {t.size for t in targets if t.kind == "builtin"}
    if len(sizes) == 1 and all(t.kind == "builtin" for t in targets):
        return f"{sizes.pop()} models"
    return ", ".join(target_title(t) for t in targets)


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


def run_attack(model: nn.Module, data: SegmentationData, attack: Attack, args: argparse.Namespace,
               progress: Progress, task: TaskID, keep_adversarial: bool = False) -> AttackEvaluation:
    """``evaluate_attack`` with the command's batching, seed and device, advancing ``task``."""
    def advance(n: int) -> None:
        progress.update(task, advance=n * attack.iterations)

    return evaluate_attack(model, data, attack, args.batch_size, args.seed, args.device,
                           keep_adversarial, advance)


def attack_records(target: Target, source: dict[str, Any], data: SegmentationData, attack: Attack,
                   evaluation: AttackEvaluation, args: argparse.Namespace,
                   with_clean: bool = True) -> list[dict[str, Any]]:
    """The clean record of the attacked images (if ``with_clean``) and the adversarial record: ``model`` is
    the target's name; a user's target is described under ``target`` (its sha256 identifies it)."""
    common = {"model": target.name, "engine": "torch", "precision": "fp32", "n_images": len(data),
              **record_fields(target), "data": data.describe(), "weights_sha256": source["sha256"],
              "device": str(args.device)}
    records = []
    if with_clean:
        records.append(make_record(**common, attack="none", params={}, scores=evaluation.clean,
                                   seconds=evaluation.clean_seconds))
    records.append(make_record(**common, attack=attack.name, params={**attack.params(), "seed": args.seed},
                               scores=evaluation.attacked, queries=evaluation.queries,
                               seconds=evaluation.attack_seconds, batch_size=args.batch_size,
                               **(evaluation.worst_case.record_fields() if evaluation.worst_case else {})))
    return records


def save_examples(directory: str, target: Target, source: dict[str, Any], data: SegmentationData,
                  attack: Attack, evaluation: AttackEvaluation, args: argparse.Namespace) -> Path:
    """Write the adversarial images with their provenance to ``directory``; returns the file."""
    assert evaluation.adversarial is not None
    name = (f"{file_stem(target.name)}--{target.size or target.kind}--{attack.label}--eps{attack.eps:g}"
            f"--seed{args.seed}.npz")
    provenance = {"attack": attack.name, "params": attack.params(), "seed": args.seed,
                  "batch_size": args.batch_size, "device": str(args.device), "source_model": target.name,
                  "size": target.size, "checkpoint": source.get("checkpoint") or source.get("weights"),
                  "checkpoint_sha256": source["sha256"], "data": data.describe(), "torch": torch.__version__}
    if target.kind != "builtin":
        provenance["target"] = target.describe()
    path = Path(directory) / name
    save_adversarial(path, evaluation.adversarial, data.labels, data.ids, provenance)
    return path
