"""The model under test: one Target for a built-in model, a user's ONNX file, TensorRT plan or PyTorch model.

A Target says what is tested (kind, name, the file or entry point and its sha256) and how its I/O differs from
the harness boundary (its model card, resolved: every field known, ``num_classes`` filled in and checked
against the data). ``target_engine`` gives the Engine that runs it (any kind); ``torch_model`` gives the
differentiable boundary module the white-box attacks need (built-in and ``--torch`` targets only).

What cannot be told is refused in one line, never guessed: an ONNX file without a card is accepted only when
it is a harness export or a graph whose I/O is the boundary with its normalisation inside; a class count or
class names that differ from the data's are refused (a silent relabelling would be a wrong number).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.data.base import SegmentationData
from harness.errors import HarnessError
from harness.fileio import sha256_file
from harness.models.weights import refuse_target_file
from harness.targets.adapter import check_logits
from harness.targets.card import ModelCard, boundary_card, require_resolved
from harness.targets.torch_entry import entry_name, load_entry, parse_entry

TARGET_KINDS = ("builtin", "onnx", "plan", "torch")
WHITE_BOX_KINDS = ("builtin", "torch")
_INSPECT = "run python -m harness inspect {path} --card card.toml, check it, then pass --card card.toml"


@dataclass(frozen=True)
class Target:
    """The model under test. ``name`` is the records' ``model`` field; ``card`` is resolved (builtin: the
    boundary card with the data's class names); ``path``: the onnx / plan file, the builtin checkpoint (or
    weight file when ``from_weights``), the torch weights (or None); ``entry``: the torch ``MODULE:CALLABLE``;
    ``size``: builtin only; ``sha256``: of the file at ``path`` (the torch entry string's when it has no
    weights; empty for a builtin checkpoint not trained yet)."""

    kind: str
    name: str
    card: ModelCard
    path: Path | None = None
    entry: str | None = None
    size: str | None = None
    sha256: str = ""
    from_weights: bool = False

    def describe(self) -> dict[str, Any]:
        """What identifies the target in a record (JSON-able)."""
        return {"kind": self.kind, "name": self.name, "path": None if self.path is None else str(self.path),
                "entry": self.entry, "sha256": self.sha256, "card": self.card.as_dict()}

    @property
    def white_box(self) -> bool:
        """Whether white-box attacks apply: there is a differentiable PyTorch model."""
        return self.kind in WHITE_BOX_KINDS

    @property
    def num_classes(self) -> int:
        assert self.card.num_classes is not None  # every constructor below fills it in
        return self.card.num_classes


def _existing_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{what} {path} " + ("is not a regular file" if path.exists() else "does not exist"))
    return path


# --- built-in models -----------------------------------------------------------------------------------------

def builtin_target(name: str, size: str, checkpoint: str | None, weights: str | None,
                   data: SegmentationData) -> Target:
    """A registry model at ``size``: weights from ``checkpoint`` or ``weights`` (not both), else the cached
    checkpoint that ``train`` writes for ``data``'s data set (checked when the model is loaded)."""
    from harness.checkpoints import default_checkpoint_path
    from harness.data import data_key
    from harness.models import check_size, get_spec

    get_spec(name)
    check_size(size)
    if checkpoint and weights:
        raise HarnessError("--checkpoint and --weights both name the model's weights; pass one of them")
    for option, value in (("--checkpoint", checkpoint), ("--weights", weights)):
        if value:
            refuse_target_file(value, option)
    path = Path(checkpoint or weights) if (checkpoint or weights) else default_checkpoint_path(name, size,
                                                                                               data_key(data))
    return Target("builtin", name, boundary_card(data.class_names, name=name), path=path, size=size,
                  sha256=sha256_file(path) if path.is_file() else "", from_weights=bool(weights))


def train_command(name: str, size: str, data: SegmentationData) -> str:
    """The ``train`` command line that writes the cached checkpoint of ``name`` at ``size`` for ``data``."""
    from harness.data import DEFAULT_SIZES

    options = [f"--size {size}"] if size != "reduced" else []
    if data.name in ("voc", "folder") and "root" in data.params:
        options.append(f"--data {data.name} --data-root {shlex.quote(str(data.params['root']))}")
    height, width = data.image_size
    if (height, width) != (DEFAULT_SIZES.get(data.name, height),) * 2:
        options.append(f"--image-size {height}" if height == width else f"--image-size {height}x{width}")
    if data.params.get("mask_format", "index") != "index":
        options.append(f"--mask-format {data.params['mask_format']}")
    if data.name == "synthetic" and data.params.get("seed", 0) != 0:
        options.append(f"--data-seed {data.params['seed']}")
    return f"python -m harness train --model {name}" + "".join(f" {o}" for o in options)


def _load_builtin(target: Target, data: SegmentationData) -> tuple[nn.Module, dict[str, Any]]:
    from harness.checkpoints import identity_problem, load_checkpoint
    from harness.models import build_model
    from harness.models.weights import load_weights

    assert target.path is not None and target.size is not None
    if target.from_weights:
        model = build_model(target.name, data.num_classes, target.size)
        load_weights(model, target.name, target.path)
        return model, {"model": target.name, "size": target.size, "weights": str(target.path),
                       "sha256": target.sha256 or sha256_file(target.path)}
    if not target.path.is_file() and not target.path.exists():
        from harness.checkpoints import default_checkpoint_path
        from harness.data import data_key

        if target.path == default_checkpoint_path(target.name, target.size, data_key(data)):
            raise HarnessError(f"no trained {target.name} ({target.size}) for this data; run: "
                               f"{train_command(target.name, target.size, data)}")
    model, meta = load_checkpoint(target.path)
    # A record must say what ran: a checkpoint that contradicts --model, --size or the data is refused.
    problem = identity_problem(meta, target.name, target.size, data.class_names)
    if problem is not None:
        raise HarnessError(f"checkpoint {target.path} {problem}")
    return model, {**meta, "checkpoint": str(target.path), "sha256": target.sha256 or sha256_file(target.path)}


# --- class count and names -----------------------------------------------------------------------------------

def _output_classes(card: ModelCard, shape: tuple[int | str, ...] | None) -> int | None:
    """The class count an output of ``shape`` in the card's layout and kind declares, or None (dynamic,
    a class map, or no shape known)."""
    kind, layout = card.output.kind, card.output.layout
    if kind in ("sigmoid", "binary_logits"):
        return 2
    if kind == "class_map" or layout == "NHW" or shape is None or len(shape) != 4:
        return None
    dim = shape[1] if layout == "NCHW" else shape[3]
    return dim if isinstance(dim, int) and not isinstance(dim, bool) else None


def _names(names: Any) -> str:
    names = list(names)
    return ", ".join(map(str, names[:6])) + (", ..." if len(names) > 6 else "")


def _resolve_classes(card: ModelCard, declared: int | None, data: SegmentationData, label: str) -> ModelCard:
    """``card`` with ``num_classes`` filled in (card, else the graph's ``declared`` count, else the data's: then
    the engines check each output's channel count against it); HarnessError when the count or the class
    names contradict the data's."""
    if card.num_classes is not None and declared is not None and card.num_classes != declared:
        raise HarnessError(f"{label}: the card says num_classes = {card.num_classes}, the graph's output has "
                           f"{declared} classes; fix num_classes in the card")
    count = card.num_classes or declared or data.num_classes
    if count != data.num_classes:
        where = "card num_classes" if card.num_classes else "its output"
        raise HarnessError(f"{label} has {count} classes ({where}), the data has {data.num_classes} "
                           f"({_names(data.class_names)}); use data with the model's classes")
    if card.class_names is not None and list(card.class_names) != list(data.class_names):
        raise HarnessError(f"{label}: the card's class_names ({_names(card.class_names)}) are not the data's "
                           f"({_names(data.class_names)}); a silent relabelling would give wrong numbers: use "
                           "data whose classes are the model's, in its order, or fix class_names in the card")
    return dataclasses.replace(card, num_classes=count)


# --- ONNX files and plans ------------------------------------------------------------------------------------

def onnx_target(path: str | Path, card: ModelCard | None, data: SegmentationData) -> Target:
    """A user's ONNX file described by ``card``; without a card, only a harness export or a graph whose I/O is
    the boundary and whose input is normalised inside the graph (anything else: one line naming inspect)."""
    from exporters.onnx_file import check_io, load_onnx
    from harness.targets.onnx_io import check_card, chosen_output, onnx_sha256, read_graph_info

    path = _existing_file(path, "ONNX file")
    label = f"ONNX file {path}"
    model = load_onnx(path, contract=False)
    info = read_graph_info(model)
    if card is None:
        card = _card_without_one(model, info, path, data)
        check_io(model, label)
    else:
        require_resolved(card, f"the card of {path}")
    check_card(card, info, label)
    output = chosen_output(info, card.output.name, label)
    card = _resolve_classes(card, _output_classes(card, output.shape), data, label)
    return Target("onnx", card.name or path.stem, card, path=path, sha256=onnx_sha256(path))  # + external data


def _card_without_one(model: Any, info: Any, path: Path, data: SegmentationData) -> ModelCard:
    """The boundary card of an ONNX file given without ``--card``, when it can be told to be one."""
    from exporters.onnx_file import read_metadata

    metadata = read_metadata(model)
    if metadata:  # a harness export: the boundary, normalisation inside, its class names recorded
        names = metadata.get("class_names")
        if isinstance(names, list) and names != list(data.class_names):
            raise HarnessError(f"ONNX file {path} was exported for the classes {_names(names)}, the data has "
                               f"{_names(data.class_names)}; a silent relabelling would give wrong numbers")
        return boundary_card()  # the class count is the graph's, checked against the data's next
    if _boundary_io(info) and _normalised_inside(path):
        return boundary_card()
    raise HarnessError(f"cannot tell how to feed ONNX file {path} (its input convention, normalisation and output "
                       f"kind are not recorded); {_INSPECT.format(path=path)}")


def _boundary_io(info: Any) -> bool:
    """One float32 (N, 3, H, W) input and one float32 rank-4 output."""
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        return False
    x, y = info.inputs[0], info.outputs[0]
    return (x.dtype == "float32" and y.dtype == "float32" and len(x.shape) == 4 and len(y.shape) == 4
            and x.shape[1] == 3)


def _normalised_inside(path: Path) -> bool:
    """Whether ``inspect`` is sure the graph normalises its input itself (mean/std read from the operators before
    its first convolution) and guesses the boundary for every other field (float32 NCHW [0, 1] in, logits at
    the input's resolution out)."""
    from harness.targets.inspect import SURE, inspect_onnx

    inspection = inspect_onnx(path)
    return (inspection.card.is_boundary and inspection.verdict("input.mean").mark == SURE
            and inspection.verdict("input.std").mark == SURE)


def plan_target(path: str | Path, card: ModelCard | None, data: SegmentationData) -> Target:
    """A user's TensorRT plan described by ``card``; without a card, only a plan the harness built (its cache
    manifest beside it), which is the boundary."""
    path = _existing_file(path, "TensorRT plan")
    label = f"TensorRT plan {path}"
    if card is None:
        if not _harness_plan(path):
            raise HarnessError(f"cannot tell how to feed TensorRT plan {path} (its I/O convention is not recorded); "
                               f"{_INSPECT.format(path=path)}")
        card = boundary_card(data.class_names)
    else:
        require_resolved(card, f"the card of {path}")
    card = _resolve_classes(card, None, data, label)
    return Target("plan", card.name or path.stem, card, path=path, sha256=sha256_file(path))


def _harness_plan(path: Path) -> bool:
    import json

    from exporters.cache import MANIFEST

    try:
        manifest = json.loads((path.parent / MANIFEST).read_text())
        return manifest.get("file") == path.name and manifest.get("key", {}).get("kind") == "trt-plan"
    except (OSError, ValueError, AttributeError):
        return False


# --- PyTorch models from the user's code ---------------------------------------------------------------------

def torch_target(entry: str, weights: str | None, card: ModelCard | None, data: SegmentationData) -> Target:
    """The ``nn.Module`` that ``entry`` (``MODULE:CALLABLE``) returns, with the state dict in ``weights``
    loaded into it. Without a card the module is taken at the boundary: float32 RGB (N, 3, H, W) in [0, 1]
    in (normalisation inside), logits (N, K, H, W) out."""
    parse_entry(entry)
    path = None
    if weights:
        refuse_target_file(weights, "--weights")
        path = _existing_file(weights, "weight file")
    if card is None:
        card = boundary_card(data.class_names)
    else:
        require_resolved(card, f"the card of --torch {entry}")
    card = _resolve_classes(card, None, data, f"--torch {entry}")
    sha = sha256_file(path) if path else hashlib.sha256(entry.encode()).hexdigest()
    return Target("torch", card.name or entry_name(entry), card, path=path, entry=entry, sha256=sha)


def _load_torch(target: Target, data: SegmentationData) -> tuple[nn.Module, dict[str, Any]]:
    from harness.models.weights import load_module_weights
    from harness.targets.adapter import AdaptedModule

    assert target.entry is not None
    module = load_entry(target.entry)
    if target.path is not None:
        load_module_weights(module, target.path, f"--torch {target.entry}")
    module.eval()
    adapted = AdaptedModule(module, target.card, target.num_classes).eval()
    scores = _probe(adapted, target, data)
    return adapted, {"model": target.name, "size": None, "entry": target.entry,
                     "weights": None if target.path is None else str(target.path),
                     "sha256": module_identity(target, adapted, scores)}


def module_identity(target: Target, module: nn.Module, scores: torch.Tensor) -> str:
    """What identifies a ``--torch`` model for caches (stored adversarial examples, Square runs) and records: the
    weights file's sha256 does not say everything its outputs depend on (the card's preprocessing, the user's
    code, weights a callable builds itself), so this hashes the card, the module's structure, its state dict's
    bytes and its ``scores`` on one probe image. A change in any of them crafts examples anew."""
    digest = hashlib.sha256()
    digest.update(json.dumps({k: v for k, v in target.describe().items() if k != "path"}, sort_keys=True).encode())
    digest.update(repr(module).encode())
    for key, value in module.state_dict().items():
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(value.detach().cpu().float().numpy()).tobytes())
    digest.update(np.round(scores.detach().cpu().float().numpy(), 3).tobytes())
    return digest.hexdigest()


def _probe(module: nn.Module, target: Target, data: SegmentationData) -> torch.Tensor:
    """``module``'s scores on one image, run before any long work: a module that fails, or returns something
    other than (1, K, H, W) logits at the image's size, is one line now instead of a crash later."""
    images, _ = data.tensors(slice(0, 1))
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    try:
        with torch.inference_mode():
            out = module(images.to(device))
    except HarnessError:
        raise
    except Exception as e:  # the user's forward may raise anything
        from harness.errors import error_line

        raise HarnessError(f"--torch {target.entry}: the model fails on one {data.image_size[0]}x"
                           f"{data.image_size[1]} image: {type(e).__name__}: {error_line(e)}") from None
    expected = (1, target.num_classes, *data.image_size)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise HarnessError(f"--torch {target.entry}: the model returns {got} for one image, the harness needs "
                           f"logits {expected}; fix output.* in the card")
    if not torch.isfinite(out).all():
        raise HarnessError(f"--torch {target.entry}: the model returns NaN or infinite scores (weights loaded?)")
    if target.card.is_boundary:  # the adapter checks every other card on each call
        check_logits(out)
    return out


# --- what the commands call ----------------------------------------------------------------------------------

def torch_model(target: Target, data: SegmentationData) -> tuple[nn.Module, dict[str, Any]]:
    """The differentiable boundary module of ``target`` (float32 [0, 1] NCHW in, logits (N, K, H, W) out, eval
    mode) and a description of its source as ``load_model`` gives it (model, size, sha256, ...)."""
    if target.kind == "builtin":
        return _load_builtin(target, data)
    if target.kind == "torch":
        if not target.card.has_scores:
            raise HarnessError(f"--torch {target.entry}: its card's output.kind = class_map has no scores, so "
                               "gradient attacks do not apply; evaluate it with eval, or attack it with a hard-label "
                               "attack")
        return _load_torch(target, data)
    raise HarnessError(f"white-box attacks need the PyTorch model: --model NAME or --torch MODULE:CALLABLE; "
                       f"{target.name} is {'an ONNX file' if target.kind == 'onnx' else 'a TensorRT plan'}: "
                       "attack it with blackbox (Square Attack) or transfer (examples crafted on a PyTorch model)")


def target_engine(target: Target, engine: str, precision: str, device: str | None, data: SegmentationData, *,
                  calibration: SegmentationData | None = None, max_batch: int | None = None,
                  threads: int | None = None) -> Any:
    """The Engine (not yet entered) that runs ``target`` on ``engine`` at ``precision``: builtin, any engine
    (engines.factory); onnx: ort (fp32: the file itself; fp16/int8: the user variant) or trt (a plan built
    from that variant); plan: trt; torch: torch, fp32."""
    from engines.factory import create_engine, resolve_device

    allowed = {"builtin": ("torch", "ort", "trt"), "onnx": ("ort", "trt"), "plan": ("trt",), "torch": ("torch",)}
    if engine not in allowed[target.kind]:
        what = {"onnx": "an ONNX file", "plan": "a TensorRT plan", "torch": "a --torch model"}.get(target.kind)
        raise HarnessError(f"{target.name} is {what}: it runs on --engine {' or '.join(allowed[target.kind])}, "
                           f"not {engine}")
    device = resolve_device(engine, precision, device)
    if target.kind == "builtin":
        model, source = torch_model(target, data)
        return create_engine(engine, model, source, data, precision=precision, device=device,
                             calibration=calibration, max_batch=max_batch, threads=threads)
    if target.kind == "torch":
        from engines.torch_engine import TorchEngine

        module, _ = _load_torch(target, data)
        return TorchEngine(module, device=device, artifact_sha256=target.sha256, max_batch=max_batch)
    if target.kind == "plan":
        from engines.trt_engine import TrtEngine

        return TrtEngine(target.path, precision=precision, max_batch=max_batch, card=target.card)
    if precision == "int8" and calibration is None:
        raise HarnessError("an int8 variant needs calibration images (the training split of the data)")
    if engine == "ort":
        from engines.ort_engine import OrtEngine

        # The file itself only at its own precision: an fp16 file is never run as "fp32" (one line instead).
        path = _user_variant(target, precision, calibration).path
        return OrtEngine(path, device=device, max_batch=max_batch, threads=threads, card=target.card)
    variant = _user_variant(target, precision, calibration)
    return _user_trt_engine(target, variant, precision, calibration, data, max_batch)


def _user_variant(target: Target, precision: str, calibration: SegmentationData | None) -> Any:
    from exporters.user_variants import user_onnx_variant

    return user_onnx_variant(target, precision, calibration)


def _user_trt_engine(target: Target, variant: Any, precision: str, calibration: SegmentationData | None,
                     data: SegmentationData, max_batch: int | None) -> Any:
    from engines.factory import DEFAULT_TRT_MAX_BATCH
    from engines.trt_engine import TrtEngine
    from exporters.tensorrt_plan import PlanSettings
    from exporters.user_variants import user_plan
    from harness.targets.adapter import Adapter

    height, width = Adapter(target.card).model_size(*data.image_size)
    limit = max_batch or DEFAULT_TRT_MAX_BATCH
    settings = PlanSettings(precision=precision, height=height, width=width, opt_batch=min(16, limit),
                            max_batch=limit, layout=target.card.input.layout,
                            channels=1 if target.card.input.channels == "grey" else 3)
    plan = user_plan(target, precision, calibration, settings)
    return TrtEngine(plan.path, precision=precision, max_batch=max_batch, card=target.card)
