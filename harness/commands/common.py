"""Arguments and loading steps that several commands share."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from harness.checkpoints import default_checkpoint_path, load_checkpoint
from harness.data import DATA_SOURCES, SegmentationData, data_key, load_data
from harness.errors import HarnessError
from harness.fileio import sha256_file
from harness.models import MODELS, SIZES, build_model
from harness.models.normalize import SegmentationModel
from harness.models.weights import load_weights

console = Console()
err_console = Console(stderr=True)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data", default="synthetic", choices=DATA_SOURCES,
                       help="built-in synthetic scenes (default), PASCAL VOC 2012, or an image+mask folder")
    group.add_argument("--data-root", help="folder of --data voc or --data folder (nothing is downloaded)")
    group.add_argument("--image-size", type=positive_int,
                       help="square image side in pixels (default: 64 synthetic, 256 voc/folder)")
    group.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic scenes (default 0)")


def data_from_args(args: argparse.Namespace, split: str, limit: int | None = None) -> SegmentationData:
    return load_data(args.data, split, args.data_root, args.image_size, args.data_seed, limit)


def add_model_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", required=required, choices=list(MODELS), metavar="NAME",
                       help=f"one of: {', '.join(MODELS)}")
    group.add_argument("--size", default="reduced", choices=SIZES,
                       help="reduced CPU width (default) or the paper's full size")
    group.add_argument("--checkpoint", help="a harness checkpoint (.safetensors) instead of the cached one")
    group.add_argument("--weights", help="a published weight file (e.g. torchvision's fcn_resnet50 .pth)")


def load_model(args: argparse.Namespace, data: SegmentationData, name: str | None = None
               ) -> tuple[SegmentationModel, dict[str, Any]]:
    """The model to evaluate or attack and a description of where its weights came from.

    Order: ``--checkpoint``, then ``--weights``, then the cached checkpoint from ``train``.
    """
    name = name or args.model
    if args.checkpoint:
        path = Path(args.checkpoint)
    elif args.weights:
        model = build_model(name, data.num_classes, args.size)
        load_weights(model, name, args.weights)
        return model, {"model": name, "size": args.size, "weights": str(args.weights),
                       "sha256": sha256_file(args.weights)}
    else:
        path = default_checkpoint_path(name, args.size, data_key(data))
        if not path.is_file():
            raise HarnessError(f"no trained {name} ({args.size}) for this data; run: python -m harness "
                               f"train --model {name}" + ("" if args.data == "synthetic" else
                                                          f" --data {args.data} --data-root DIR"))
    model, meta = load_checkpoint(path)
    if meta["class_names"] != data.class_names:
        raise HarnessError(f"{path} was trained on classes {meta['class_names']}, the data has "
                           f"{data.class_names}")
    return model, {**meta, "checkpoint": str(path), "sha256": sha256_file(path)}


def set_threads() -> None:
    """Use every available core for intra-op parallelism, unless OMP_NUM_THREADS says otherwise."""
    import os

    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
