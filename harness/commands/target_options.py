"""The target options every command that takes a model shares: ``--model NAME | --onnx FILE | --plan FILE |
--torch MODULE:CALLABLE`` (exactly one), ``--size``, ``--checkpoint``, ``--weights``, ``--card FILE`` and
``--card-set FIELD=VALUE``; and the Target they name (harness.targets.target)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from harness.data.base import SegmentationData
from harness.errors import HarnessError
from harness.models import MODELS, SIZES
from harness.targets.card import apply_overrides, boundary_card, load_card
from harness.targets.target import Target, builtin_target, onnx_target, plan_target, torch_target

TARGET_OPTIONS = {"model": "--model", "onnx": "--onnx", "plan": "--plan", "torch": "--torch"}
DEFAULT_SIZE = "reduced"
# What the --help of the white-box commands (attack, whitebox, sweep) says of the kinds they refuse.
WHITE_BOX_REFUSED = {kind: f"white-box attacks need the PyTorch model; attack {what} with blackbox or transfer"
                     for kind, what in (("onnx", "an ONNX file"), ("plan", "a TensorRT plan"))}


def add_target_arguments(parser: argparse.ArgumentParser, *, kinds: Sequence[str] = ("model", "onnx", "plan", "torch"),
                         required: bool = True, refused: Mapping[str, str] | None = None) -> None:
    """Add the target options of ``kinds`` (a subset of model, onnx, plan, torch; exactly one may be given,
    and one must be when ``required``) and the options that complete them. ``refused`` maps a kind the command
    takes only to refuse it in one line (e.g. white-box attacks and an ONNX file) to the reason its --help says."""
    unknown = [k for k in kinds if k not in TARGET_OPTIONS]
    assert not unknown, f"unknown target kinds {unknown}"
    group = parser.add_argument_group("model under test")
    which = group.add_mutually_exclusive_group(required=required)
    refused = refused or {}

    def helped(kind: str, text: str) -> str:
        return f"refused here: {refused[kind]}" if kind in refused else text

    if "model" in kinds:
        which.add_argument("--model", choices=list(MODELS), metavar="NAME",
                           help=f"a built-in model: {', '.join(MODELS)}")
    if "onnx" in kinds:
        which.add_argument("--onnx", metavar="FILE", help=helped("onnx", "your ONNX file (engines ort, trt); describe "
                           "its I/O with --card (python -m harness inspect FILE writes one)"))
    if "plan" in kinds:
        which.add_argument("--plan", metavar="FILE",
                           help=helped("plan", "your TensorRT plan (engine trt), with --card"))
    if "torch" in kinds:
        which.add_argument("--torch", metavar="MODULE:CALLABLE",
                           help=helped("torch", "a function in your code (imported from the current directory) "
                                       "returning a torch.nn.Module; its weights with --weights; without --card it "
                                       "must take float32 RGB (N, 3, H, W) in [0, 1] and return logits (N, K, H, W)"))
    if "model" in kinds:
        group.add_argument("--size", choices=SIZES, help="--model's width: reduced (default) or paper")
        group.add_argument("--checkpoint", metavar="FILE",
                           help="--model's harness checkpoint (.safetensors) instead of the cached one")
    if "model" in kinds or "torch" in kinds:
        group.add_argument("--weights", metavar="FILE",
                           help="a state dict (.pth/.pt/.safetensors; {'model': ...}, {'state_dict': ...} and a "
                                "'module.' prefix are unwrapped) for --model or --torch")
    if any(k in kinds for k in ("onnx", "plan", "torch")):
        group.add_argument("--card", metavar="FILE", help="the model card (TOML) of --onnx, --plan or --torch")
        group.add_argument("--card-set", action="append", metavar="FIELD=VALUE",
                           help="override one card field, e.g. input.mean=imagenet or output.kind=sigmoid "
                                "(repeatable)")


def given_kind(args: argparse.Namespace) -> str | None:
    """Which target option was given: model, onnx, plan or torch (None: none)."""
    given = [kind for kind in TARGET_OPTIONS if getattr(args, kind, None) is not None]
    return given[0] if given else None


def target_from_args(args: argparse.Namespace, data: SegmentationData) -> Target:
    """The Target the options name, checked against ``data`` (its classes). Options that do not apply to the
    given kind are refused in one line rather than ignored."""
    kind = given_kind(args)
    if kind is None:
        raise HarnessError("give the model under test: --model NAME, --onnx FILE, --plan FILE or "
                           "--torch MODULE:CALLABLE")
    size, checkpoint = getattr(args, "size", None), getattr(args, "checkpoint", None)
    weights = getattr(args, "weights", None)
    card_file, overrides = getattr(args, "card", None), getattr(args, "card_set", None) or []
    if kind != "model":
        for option, value in (("--size", size), ("--checkpoint", checkpoint)):
            if value is not None:
                raise HarnessError(f"{option} applies to --model (a built-in model), not to {TARGET_OPTIONS[kind]}"
                                   + ("; a --torch model takes --weights FILE" if option == "--checkpoint"
                                      and kind == "torch" else ""))
    if kind in ("onnx", "plan") and weights is not None:
        raise HarnessError(f"--weights loads a state dict into --model or --torch; {TARGET_OPTIONS[kind]} "
                           f"{getattr(args, kind)} holds its own weights")
    if kind == "model":
        if card_file is not None or overrides:
            raise HarnessError("--card and --card-set describe your own target (--onnx, --plan, --torch); a built-in "
                               "--model is at the harness boundary")
        return builtin_target(args.model, size or DEFAULT_SIZE, checkpoint, weights, data)
    card = load_card(card_file) if card_file is not None else None
    if overrides:
        where = f"card {card_file} with --card-set" if card_file is not None else "--card-set"
        card = apply_overrides(card if card is not None else boundary_card(), overrides, where=where)
    if kind == "onnx":
        return onnx_target(args.onnx, card, data)
    if kind == "plan":
        return plan_target(args.plan, card, data)
    return torch_target(args.torch, weights, card, data)


def record_fields(target: Target) -> dict[str, object]:
    """The fields a record carries about its target: ``size`` for a built-in model, ``target`` (kind, path or
    entry, sha256, card) for the user's."""
    if target.kind == "builtin":
        return {"size": target.size}
    return {"target": target.describe()}


def target_title(target: Target) -> str:
    """How tables name the target: ``fcn8s-vgg16 (reduced)``, ``lraspp (onnx)``."""
    return f"{target.name} ({target.size if target.kind == 'builtin' else target.kind})"
