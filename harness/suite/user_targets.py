"""The suite's ``[[targets]]``: the user's models under test, opened before any work, and what applies to each.

:func:`open_targets` turns every :class:`~harness.suite.config.TargetSpec` into a
:class:`~harness.targets.target.Target` (the file and its card checked against each other and against the
data: a mismatch is one line before any training), named by the table's ``name``. A torch target is also
loaded as a differentiable boundary module (``loaded``: what white-box attacks and transfer crafting use).

What does not apply to a target is never silently dropped: :class:`Skip` says which experiment, engine and
precision, and why (an ONNX file has no PyTorch model; a class-map output has no scores; an fp16 file has no
fp32 variant). The runner writes them into suite.json (``skipped``) and the console shows them.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from engines.base import Engine
from harness.data.base import SegmentationData
from harness.errors import HarnessError
from harness.suite.config import TargetSpec
from harness.targets.target import Target, onnx_target, plan_target, target_engine, torch_model, torch_target
from harness.transfer import LoadedModel

ENGINES_OF_KIND = {"onnx": ("ort", "trt"), "plan": ("trt",), "torch": ("torch",)}
_NO_ENGINE = {"onnx": "an ONNX file runs on ort and trt (it has no PyTorch model)",
              "plan": "a TensorRT plan runs on trt only",
              "torch": "a torch target runs on the torch engine only (to test its deployment, export it to ONNX "
                       "and add that file as an onnx target)"}


@dataclass(frozen=True)
class Skip:
    """An experiment (and engine/precision, where it is one deployment pair) that does not apply to a target."""

    model: str
    experiment: str
    reason: str
    engine: str | None = None
    precision: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @property
    def line(self) -> str:
        pair = f" on {self.engine} {self.precision}" if self.engine else ""
        return f"{self.model}: {self.experiment}{pair} skipped: {self.reason}"


@dataclass(frozen=True)
class OpenTarget:
    """A suite target, opened: the Target (named by the suite), and for a torch target its loaded boundary
    module with a source description whose ``sha256`` identifies everything its outputs depend on."""

    spec: TargetSpec
    target: Target
    loaded: LoadedModel | None = None

    @property
    def name(self) -> str:
        return self.target.name

    def fields(self) -> dict[str, Any]:
        """What every record of this target carries beside the metrics (DESIGN.md: named by its card,
        identified by its sha256)."""
        return {"size": None, "weights_sha256": self.target.sha256, "target": self.target.describe()}


@contextmanager
def _search_path(folder: str) -> Iterator[None]:
    """``folder`` first on sys.path while a torch target's module is imported: a suite's ``torch = "pkg:build"``
    is found beside the suite file, as its files are, whatever the current directory."""
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


def open_targets(specs: Sequence[TargetSpec], data: SegmentationData, where: str) -> list[OpenTarget]:
    """Every target of the suite, opened and checked against ``data``: HarnessError naming the suite file
    (``where``) and the table first."""
    opened = []
    for spec in specs:
        with in_table(spec, where):
            opened.append(_open(spec, data))
    return opened


@contextmanager
def in_table(spec: TargetSpec, where: str) -> Iterator[None]:
    """A HarnessError raised inside names the suite file and ``spec``'s table first."""
    try:
        yield
    except HarnessError as e:
        raise HarnessError(f"{where}: {spec.label}: {e}", e.exit_code) from None


def _named(target: Target, name: str) -> Target:
    """``target`` under the suite's name (its card's too): the records' model is the table's ``name``."""
    return dataclasses.replace(target, name=name, card=dataclasses.replace(target.card, name=name))


def _open(spec: TargetSpec, data: SegmentationData) -> OpenTarget:
    card = spec.card_data
    if spec.kind == "onnx":
        return OpenTarget(spec, _named(onnx_target(spec.path, card, data), spec.name))
    if spec.kind == "plan":
        return OpenTarget(spec, _named(plan_target(spec.path, card, data), spec.name))
    assert spec.entry is not None
    with _search_path(spec.folder):
        target = _named(torch_target(spec.entry, spec.weights, card, data), spec.name)
        module, source = torch_model(target, data)
    return OpenTarget(spec, target, (module, {**source, "model": spec.name}))


def own_pair(target: OpenTarget) -> tuple[str, str]:
    """The deployment the user gave: an ONNX file on ort at its own precision, a plan on trt at the
    precision it was built with, a torch model on torch fp32."""
    if target.target.kind == "onnx":
        from exporters.user_variants import own_precision

        return "ort", own_precision(target.target)
    if target.target.kind == "plan":
        assert target.spec.precision is not None
        return "trt", target.spec.precision
    return "torch", "fp32"


def target_pairs(target: OpenTarget, pairs: Sequence[tuple[str, str]], experiment: str
                 ) -> tuple[list[tuple[str, str]], list[Skip]]:
    """The (engine, precision) pairs ``target`` is evaluated on: its own (:func:`own_pair`), then every pair of
    ``pairs`` (the suite's deployment) it runs; a Skip for each pair of ``pairs`` it does not run."""
    kind = target.target.kind
    own = own_pair(target)
    kept: list[tuple[str, str]] = [own]
    skipped: list[Skip] = []
    for engine, precision in pairs:
        if (engine, precision) == own:
            continue
        reason = None
        if engine not in ENGINES_OF_KIND[kind]:
            reason = _NO_ENGINE[kind]
        elif kind == "onnx":
            reason = _variant_problem(target.target, precision)
        elif kind == "plan":
            reason = f"the plan was built at {own[1]} ([[targets]] precision); it has no {precision} variant"
        if reason is None:
            kept.append((engine, precision))
        else:
            skipped.append(Skip(target.name, experiment, reason, engine, precision))
    return kept, skipped


def _variant_problem(target: Target, precision: str) -> str | None:
    """Why the user's ONNX file has no ``precision`` variant (e.g. fp32 of an fp16 file), or None."""
    from exporters.user_variants import check_variants

    try:
        check_variants(target, [precision])
    except HarnessError as e:
        return str(e)
    return None


def engine_opener(target: OpenTarget, engine: str, precision: str, device: str | None, data: SegmentationData,
                  calibration: SegmentationData | None, max_batch: int | None = None) -> Callable[[], Engine]:
    """A function that opens ``target``'s engine (not yet entered) for ``engine``/``precision``."""

    def open_engine() -> Engine:
        if target.loaded is not None:  # a torch target: the module already loaded, checked and probed
            from engines.factory import resolve_device
            from engines.torch_engine import TorchEngine

            return TorchEngine(target.loaded[0], device=resolve_device(engine, precision, device),
                               artifact_sha256=target.target.sha256, max_batch=max_batch)
        return target_engine(target.target, engine, precision, device, data,
                             calibration=calibration if precision == "int8" else None, max_batch=max_batch)

    return open_engine
