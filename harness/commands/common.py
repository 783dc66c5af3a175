"""Arguments and loading steps that several commands share."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from rich.console import Console

from harness.data import DATA_SOURCES, MASK_FORMATS, SegmentationData, load_data
from harness.data.sizes import ImageSize, image_size
from harness.errors import HarnessError
from harness.limits import MAX_IMAGE_SIZE, MAX_SEED, MAX_SYNTHETIC_IMAGE_SIZE, MIN_IMAGE_SIZE
from harness.models import MODELS, SIZES
from harness.models.normalize import SegmentationModel
from harness.targets.target import builtin_target, torch_model

console = Console()
err_console = Console(stderr=True)


def int_in(minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse type: an integer in [minimum, maximum] (the documented bounds of harness.limits)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:  # also a number of more than 4300 digits
            raise argparse.ArgumentTypeError(f"{_shown(text)} is not an integer") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{_shown(text)} is outside [{minimum}, {maximum}]")
        return value

    parse.__name__ = f"integer in [{minimum}, {maximum}]"
    parse.interval = (minimum, maximum, False, False)  # type: ignore[attr-defined]  # for the tests and --help
    return parse


def float_in(minimum: float, maximum: float, open_min: bool = False, open_max: bool = False
             ) -> Callable[[str], float]:
    """An argparse type: a finite number in the interval from ``minimum`` to ``maximum`` (each end open
    or closed); inf and nan are refused."""
    interval = f"{'(' if open_min else '['}{minimum:g}, {maximum:g}{')' if open_max else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_shown(text)} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{_shown(text)} is not a finite number")
        above = value > minimum if open_min else value >= minimum
        below = value < maximum if open_max else value <= maximum
        if not (above and below):
            raise argparse.ArgumentTypeError(f"{_shown(text)} is outside {interval}")
        return value + 0.0  # -0 is 0: recorded and printed as 0, never as "-0"

    parse.__name__ = f"number in {interval}"
    parse.interval = (minimum, maximum, open_min, open_max)  # type: ignore[attr-defined]
    return parse


# Seeds of numpy's and torch's generators: numpy's legacy limit, 0 <= seed < 2**32.
seed_int = int_in(0, MAX_SEED)
# The L-infinity radius and step sizes on the 0-255 pixel scale.
pixel_scale = float_in(0, 255, open_min=True)


def _shown(text: str) -> str:
    """A command-line value for a one-line message: quoted, escapes visible, at most about 40 characters."""
    return repr(text) if len(text) <= 40 else repr(text[:30]) + f"... ({len(text)} characters)"


_image_side = int_in(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)


def image_size_arg(text: str) -> int | ImageSize:
    """An argparse type: PX (a square side) or HEIGHTxWIDTH (e.g. 192x256), each side in the bounds of
    harness.limits; a square HxW is its side (one data set, one cache key)."""
    height, sep, width = text.lower().partition("x")
    if not sep:
        return _image_side(text)
    try:
        sides = _image_side(height), _image_side(width)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{_shown(text)} is not PX or HEIGHTxWIDTH with each side an integer in "
                                         f"[{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}] (e.g. 192x256)") from None
    return image_size(*sides)


image_size_arg.__name__ = f"integer in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}] or HEIGHTxWIDTH"
image_size_arg.interval = _image_side.interval  # type: ignore[attr-defined]  # each side's bounds


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data", default="synthetic", choices=DATA_SOURCES,
                       help="built-in synthetic scenes (default), PASCAL VOC 2012, or an image+mask folder")
    group.add_argument("--data-root", help="folder of --data voc or --data folder (nothing is downloaded)")
    group.add_argument("--image-size", type=image_size_arg, metavar="PX|HxW",
                       help=f"image size in pixels: PX (square) or HEIGHTxWIDTH (voc/folder, e.g. 192x256), each "
                            f"side {MIN_IMAGE_SIZE}-{MAX_IMAGE_SIZE}; images are scaled to cover it and centre-"
                            f"cropped (synthetic: square, at most {MAX_SYNTHETIC_IMAGE_SIZE}; default: 64 synthetic, "
                            "256 voc/folder)")
    group.add_argument("--mask-format", default="index", choices=MASK_FORMATS,
                       help="how --data folder masks encode classes: index (default; the value is the class, "
                            "255 = ignore), binary (0 = background, any other value = foreground, e.g. 0/255) or "
                            "rgb (colour masks; DIR/colors.txt lists each class's exact colour)")
    group.add_argument("--data-seed", type=seed_int, default=0, metavar="SEED",
                       help=f"seed of the synthetic scenes, 0-{MAX_SEED} (default 0)")


def data_from_args(args: argparse.Namespace, split: str, limit: int | None = None) -> SegmentationData:
    # An option that the chosen data ignores would give numbers of other data than the user meant.
    if args.data == "synthetic" and args.data_root is not None:
        raise HarnessError(f"--data-root {args.data_root} is read by --data voc or --data folder only; add one of "
                           "them (the default, --data synthetic, is generated)")
    if args.data != "synthetic" and args.data_seed != 0:
        raise HarnessError(f"--data-seed {args.data_seed} selects synthetic scenes; --data {args.data} has fixed "
                           "images, so leave it out")
    if args.data == "synthetic" and isinstance(args.image_size, int) and args.image_size > MAX_SYNTHETIC_IMAGE_SIZE:
        raise HarnessError(f"--image-size {args.image_size}: the synthetic data is generated whole (1000 train "
                           f"images) in memory, so at most {MAX_SYNTHETIC_IMAGE_SIZE} px; larger images need "
                           "--data voc or --data folder")
    # load_data refuses a non-square synthetic size and --mask-format binary outside --data folder.
    return load_data(args.data, split, args.data_root, args.image_size, args.data_seed, limit, args.mask_format)


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
    """The built-in model to evaluate or attack and a description of where its weights came from.

    ``--checkpoint`` or ``--weights`` (not both), else the cached checkpoint from ``train``. A checkpoint must
    hold the model and size asked for and the data's classes: what is recorded is what ran. (The built-in
    case of ``harness.targets.target``: one way to load a model.)
    """
    target = builtin_target(name or args.model, getattr(args, "size", None) or "reduced",
                            getattr(args, "checkpoint", None), getattr(args, "weights", None), data)
    model, source = torch_model(target, data)
    assert isinstance(model, SegmentationModel)
    return model, source
