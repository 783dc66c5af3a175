"""Transfer evaluation: adversarial examples crafted white-box on source models, run on target engines.

The paper's Table 2 (examples from each source model, evaluated on every target model) and a
deployment-gap view (each model's own examples through every engine and precision). The
``transfer`` command is a thin wrapper around :func:`run_transfer`; a suite calls it directly::

    attacks = parse_attacks("mifgsm,pgd20", eps=8)
    choices = engine_choices(["torch", "ort"], ["fp32", "int8"])
    models = load_models(["fcn8s-vgg16", "fcn-resnet50"], data)
    result = run_transfer(models, sources, targets, choices, attacks, data,
                          TransferSettings(calibration=train_data[:N]))
    result.records  # DESIGN.md records: clean (attack "none") and adversarial (source_model/source_engine)

Contracts:
- Crafting is white-box in PyTorch (fp32, ``settings.device``) with ``evaluate_attack``; the examples
  are stored losslessly (``harness.attacks.store``) under ``<cache>/adversarial/`` and reused only when
  their provenance matches exactly: source model, size, checkpoint sha256, attack, parameters, seed,
  batch size, crafting device, data set, image ids, the clean images' hash and the labels. Anything else
  is crafted anew.
- Targets are black boxes: only ``Engine.infer`` is called on them, ``settings.batch_size`` images at a time
  (the batches of the white-box evaluation, so the torch fp32 diagonal reproduces it bit for bit).
- Every (target, engine, precision) gets a clean record of the same images beside its adversarial ones.
- User models: ``models`` may map a name to a :class:`harness.targets.target.Target` instead of a loaded
  built-in model. A source must be white-box (built-in or ``--torch``: its adapted boundary module is
  attacked); a target is run through ``target_engine`` on the engine choices its kind runs (an ONNX file:
  ort, trt; a plan: trt; a ``--torch`` model: torch) and its records carry ``target`` (kind, path or entry,
  sha256, card). A source and a target of the same name are the same model (white box, the deployment gap):
  the name is the card's ``name`` (default: the file stem or callable name), so a user's PyTorch model and
  its ONNX export are matched by giving both cards the same name.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines.availability import ENGINES, PRECISIONS
from engines.base import Engine
from engines.factory import create_engine, resolve_device
from harness import distributed
from harness.attacks import Attack, attacks_from_names
from harness.attacks.evaluation import evaluate_attack
from harness.attacks.store import AdversarialSet, load_adversarial, save_adversarial
from harness.data.base import SegmentationData
from harness.errors import HarnessError
from harness.fileio import cache_dir, file_stem
from harness.metrics import ConfusionMatrix, Scores
from harness.models import MODELS
from harness.models.normalize import SegmentationModel
from harness.targets.target import Target, builtin_target, target_engine, torch_model
from reports.results import make_record

DEFAULT_ATTACKS = "mifgsm,pgd20"
SOURCE_ENGINE = "torch"  # examples are always crafted on the eager fp32 PyTorch model
SOURCE_PRECISION = "fp32"
# Provenance fields that must all match for stored examples to be reused (ids and labels are checked too).
MATCH_FIELDS = ("source_model", "size", "checkpoint_sha256", "attack", "params", "seed", "batch_size", "device",
                "data", "clean_images_sha256")
# A user source's provenance also holds its target description (entry point, weights sha256, card), which must
# match too: the same weights behind another card (mean/std, output name) are another model.
TARGET_FIELD = "target"
# The engines each kind of user target runs on (a built-in model runs on all of them).
TARGET_ENGINES = {"builtin": ENGINES, "onnx": ("ort", "trt"), "plan": ("trt",), "torch": ("torch",)}

LoadedModel = tuple[SegmentationModel, dict[str, Any]]
# A built-in model as load_models loads it, or a Target (a user's model, or a built-in one named as a Target).
TransferModel = LoadedModel | Target
# on_work(kind, description, n): kind "gradients" (crafting) or "images" (engine inference).
WorkCallback = Callable[[str, str, int], None]


@dataclass(frozen=True)
class EngineChoice:
    """One deployment variant a target is evaluated on: engine name and artifact precision."""

    engine: str
    precision: str

    @property
    def label(self) -> str:
        return f"{self.engine} {self.precision}"


@dataclass
class TransferSettings:
    """How examples are crafted and engines opened.

    ``calibration``: training images for int8 exports (required when an int8 ort/trt choice is made);
    ``engine_device``: cpu or cuda for every engine (None: each engine's default, cuda for trt).
    """

    size: str = "reduced"
    seed: int = 0
    batch_size: int = 16
    device: str = "cpu"
    engine_device: str | None = None
    calibration: SegmentationData | None = None


@dataclass
class ExampleSet:
    """The adversarial examples of one (source, attack): where they are stored, whether they were reused."""

    source: str
    attack: Attack
    examples: AdversarialSet
    path: Path
    reused: bool
    seconds: float  # crafting time now (0 when reused)


@dataclass
class TransferResult:
    """``records``: DESIGN.md records, clean and adversarial; ``example_sets`` by (source, attack label)."""

    records: list[dict[str, Any]]
    example_sets: dict[tuple[str, str], ExampleSet] = field(default_factory=dict)
    craft_seconds: float = 0.0
    eval_seconds: float = 0.0


def parse_models(text: str, option: str) -> list[str]:
    """``a,b`` -> registry names in order, without repeats; HarnessError naming ``option`` otherwise."""
    names = split_list(text, option)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise HarnessError(f"unknown model {unknown[0]!r} in {option}; choose from: {', '.join(MODELS)}")
    return names


def parse_attacks(text: str, eps: float) -> list[Attack]:
    """``mifgsm,pgd20`` -> attacks (see :func:`harness.attacks.attacks_from_names`); repeats are dropped."""
    return attacks_from_names(split_list(text, "--attacks"), eps, "--attacks")


def engine_choices(engines: Sequence[str], precisions: Sequence[str]) -> list[EngineChoice]:
    """Every (engine, precision) pair the engine can run (torch runs fp32 only); HarnessError on unknown
    names or when no pair is left."""
    for name in engines:
        if name not in ENGINES:
            raise HarnessError(f"unknown engine {name!r} in --engines; choose from: {', '.join(ENGINES)}")
    all_precisions = sorted({p for ps in PRECISIONS.values() for p in ps})
    for precision in precisions:
        if precision not in all_precisions:
            raise HarnessError(f"unknown precision {precision!r} in --precisions; choose from: "
                               f"{', '.join(all_precisions)}")
    choices = [EngineChoice(e, p) for e in engines for p in precisions if p in PRECISIONS[e]]
    if not choices:
        raise HarnessError(f"no chosen engine runs the chosen precisions ({', '.join(precisions)}); "
                           "torch runs fp32 only")
    return choices


def split_list(text: str, option: str) -> list[str]:
    """``a, b,a`` -> ``["a", "b"]`` (order kept, repeats dropped); HarnessError naming ``option`` when empty."""
    items = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not items:
        raise HarnessError(f"{option} is empty; give a comma-separated list")
    return items


def check_engines(choices: Sequence[EngineChoice], engine_device: str | None = None) -> None:
    """Raise the factory's one-line HarnessError when a chosen engine cannot run here (e.g. trt without a GPU)."""
    for choice in choices:
        resolve_device(choice.engine, choice.precision, engine_device)


def load_models(names: Sequence[str], data: SegmentationData, size: str = "reduced") -> dict[str, LoadedModel]:
    """The cached checkpoint of each model trained on ``data``'s data set, as ``torch_model`` loads it."""
    loaded = {}
    for name in dict.fromkeys(names):
        loaded[name] = torch_model(builtin_target(name, size, None, None, data), data)
    return loaded


def example_provenance(source_name: str, source: Mapping[str, Any], data: SegmentationData, attack: Attack,
                       settings: TransferSettings, target: Target | None = None) -> dict[str, Any]:
    """The provenance stored with crafted examples: the fields of ``attack --save-adv`` plus the hash of the
    clean images (a folder or VOC image edited in place keeps its id but must not reuse old examples), and
    for a user's source (``target`` not a built-in model) its description under ``"target"``."""
    provenance = {"attack": attack.name, "params": attack.params(), "seed": settings.seed,
                  "batch_size": settings.batch_size, "device": str(settings.device), "source_model": source_name,
                  "size": source.get("size", settings.size),
                  "checkpoint": source.get("checkpoint") or source.get("weights"),
                  "checkpoint_sha256": source["sha256"], "data": data.describe(), "torch": torch.__version__,
                  "clean_images_sha256": hashlib.sha256(np.ascontiguousarray(data.images).tobytes()).hexdigest()}
    if target is not None and target.kind != "builtin":
        provenance[TARGET_FIELD] = target.describe()
    return provenance


def _matching(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The provenance fields that must match (the target description only where there is one, so the keys of
    built-in models' examples stay what they were)."""
    return {k: provenance[k] for k in (*MATCH_FIELDS, TARGET_FIELD) if k in provenance}


def example_path(provenance: Mapping[str, Any], ids: Sequence[str]) -> Path:
    """Where the examples of this provenance live: one file per distinct matching key."""
    wanted = _matching(provenance) | {"ids": list(ids)}
    key = hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:16]
    label = provenance["attack"] + (f"-{provenance['params']['steps']}" if "steps" in provenance["params"] else "")
    size = provenance["size"] or provenance.get(TARGET_FIELD, {}).get("kind", "user")
    name = f"{file_stem(provenance['source_model'])}--{size}--{label}--eps{provenance['params']['eps']:g}--{key}.npz"
    return cache_dir() / "adversarial" / name


def provenance_matches(stored: AdversarialSet, provenance: Mapping[str, Any], data: SegmentationData) -> bool:
    """True when ``stored`` was made from exactly these weights, attack settings, images and labels."""
    # Compare through JSON, as the stored document went through it (tuples become lists, etc.).
    wanted = json.loads(json.dumps({k: provenance.get(k) for k in (*MATCH_FIELDS, TARGET_FIELD)}))
    return (all(stored.provenance.get(k) == v for k, v in wanted.items())
            and stored.ids == list(data.ids)
            and np.array_equal(stored.labels, data.labels)
            and stored.images.shape == (len(data), 3, *data.image_size))


def adversarial_examples(source_name: str, loaded: LoadedModel, data: SegmentationData, attack: Attack,
                         settings: TransferSettings, on_work: WorkCallback | None = None,
                         target: Target | None = None) -> ExampleSet:
    """The examples of ``attack`` on ``source_name`` for every image of ``data``: the stored ones when their
    provenance matches (see the module docstring), else crafted now (``evaluate_attack``, which moves the
    model to ``settings.device``) and stored atomically. ``target``: the source's Target when it is a user's
    model (``loaded`` is then its ``torch_model``), so its card and entry point are part of the provenance."""
    model, source = loaded
    provenance = example_provenance(source_name, source, data, attack, settings, target)
    path = example_path(provenance, data.ids)
    stored = None
    if path.is_file():
        try:
            stored = load_adversarial(path)
        except HarnessError:
            stored = None  # a damaged file is crafted again and replaced
    # The ranks of a torchrun job craft together (or reuse) alike, whatever each of them finds in the cache.
    if distributed.everywhere(stored is not None and provenance_matches(stored, provenance, data)):
        assert stored is not None
        if on_work is not None:
            on_work("gradients", f"{source_name} {attack.label} (stored)", len(data) * attack.iterations)
        return ExampleSet(source_name, attack, stored, path, reused=True, seconds=0.0)

    def advance(n: int) -> None:
        if on_work is not None:
            on_work("gradients", f"{source_name} {attack.label}", n * attack.iterations)

    model.to(settings.device)
    evaluation = evaluate_attack(model, data, attack, settings.batch_size, settings.seed, settings.device,
                                 keep_adversarial=True, on_batch=advance)
    assert evaluation.adversarial is not None
    # What was written, as a reused file reads back (the stored hash in its provenance); every rank holds it, so
    # none reads rank 0's file (a cache per node has no such file on the other nodes).
    examples = save_adversarial(path, evaluation.adversarial, data.labels, list(data.ids), provenance)
    distributed.barrier()  # later looks at the cache see rank 0's file on every rank that shares it
    return ExampleSet(source_name, attack, examples, path, reused=False, seconds=evaluation.attack_seconds)


def engine_scores(engine: Engine, images: np.ndarray, labels: np.ndarray, num_classes: int,
                  batch_size: int) -> tuple[Scores, float]:
    """Scores of ``engine`` (entered) on ``images`` float32 (N, 3, H, W), ``batch_size`` images per call,
    and the seconds spent inside the engine (under torchrun: this rank's share of the batches, counts summed)."""
    confusion = ConfusionMatrix(num_classes)
    before = engine.seconds
    distributed.same_inputs("the images and labels to score", images, labels, batch_size=batch_size)
    for _, batch in distributed.batches(len(images), batch_size):
        logits = engine.infer(np.ascontiguousarray(images[batch]))
        confusion.update(logits.argmax(1), labels[batch])
    confusion.matrix = distributed.sum_over_ranks(confusion.matrix)
    return confusion.scores(), engine.seconds - before


def target_choices(name: str, model: TransferModel, choices: Sequence[EngineChoice]) -> list[EngineChoice]:
    """The engine choices target ``name`` runs on: all for a built-in model, those of its kind for a user's
    (an ONNX file: ort, trt; a plan: trt; a --torch model: torch); HarnessError when none is left."""
    kind = model.kind if isinstance(model, Target) else "builtin"
    kept = [c for c in choices if c.engine in TARGET_ENGINES[kind]]
    if not kept:
        what = {"onnx": "an ONNX file", "plan": "a TensorRT plan", "torch": "a --torch model"}.get(kind, kind)
        raise HarnessError(f"target {name} is {what}: it runs on --engines {','.join(TARGET_ENGINES[kind])}, and "
                           f"none of {', '.join(c.label for c in choices)} is one of them")
    return kept


def check_sources(models: Mapping[str, TransferModel], sources: Sequence[str]) -> None:
    """HarnessError (one line) for a source that has no PyTorch model to craft examples on."""
    for name in sources:
        model = models[name]
        if isinstance(model, Target) and not model.white_box:
            raise HarnessError(f"source {name} is {'an ONNX file' if model.kind == 'onnx' else 'a TensorRT plan'}: "
                               "examples are crafted white-box on a PyTorch model (--sources NAME or "
                               "--source-torch MODULE:CALLABLE); give it as a target instead")


def run_transfer(models: Mapping[str, TransferModel], sources: Sequence[str], targets: Sequence[str],
                 choices: Sequence[EngineChoice], attacks: Sequence[Attack], data: SegmentationData,
                 settings: TransferSettings, on_work: WorkCallback | None = None, *,
                 target_models: Mapping[str, Target] | None = None) -> TransferResult:
    """Craft (or reuse) the examples of every (source, attack), then evaluate every target on every engine
    choice it runs on (:func:`target_choices`): the clean images, then every example set. ``models`` must
    hold every source and target: a loaded built-in model or a Target (see the module docstring);
    ``target_models`` holds the targets that share their name with a source but are another artifact of that
    model (a user's ONNX export of a ``--torch`` source): a target is looked up there first.

    Records (DESIGN.md): per (target, choice) one clean record (``attack: "none"``) and one adversarial
    record per (source, attack) with ``source_model``, ``source_engine`` ("torch"), ``source_precision``
    ("fp32") and ``white_box`` (source == target); a user's target adds ``target`` and a user's source
    ``source_target`` (its description). Raises HarnessError before any work when an engine cannot run here,
    a source has no PyTorch model, or a target runs on none of the choices.
    """
    target_models = target_models or {}
    missing = [name for name in sources if name not in models] + [
        name for name in targets if name not in models and name not in target_models]
    if missing:
        raise HarnessError(f"model {missing[0]} was not loaded")
    check_engines(choices, settings.engine_device)
    check_sources(models, sources)
    # A built-in model given as a Target is loaded here, so all built-in models run the same way below.
    models = {name: _loaded(model, data) for name, model in models.items() if name in (*sources, *targets)}
    evaluated = {name: _loaded(target_models[name], data) if name in target_models else models[name]
                 for name in targets}
    runs = {name: target_choices(name, evaluated[name], choices) for name in targets}
    if settings.calibration is None and any(c.precision == "int8" and c.engine != "torch"
                                            for kept in runs.values() for c in kept):
        raise HarnessError("int8 needs calibration images (TransferSettings.calibration)")
    result = TransferResult([])
    start = time.perf_counter()
    for name in sources:
        model = models[name]
        user = model if isinstance(model, Target) else None
        loaded = model if user is None else torch_model(user, data)
        for attack in attacks:
            example_set = adversarial_examples(name, loaded, data, attack, settings, on_work, target=user)
            result.example_sets[name, attack.label] = example_set
    result.craft_seconds = time.perf_counter() - start
    start = time.perf_counter()
    clean_images = data.tensors(slice(None))[0].numpy()
    labels = data.labels
    for target in targets:
        model = evaluated[target]
        for choice in runs[target]:
            calibration = settings.calibration if choice.precision == "int8" else None
            engine, identity = _target_engine(model, choice, data, settings, calibration)
            with engine:
                common = {"model": target, "engine": choice.engine, "precision": choice.precision,
                          "n_images": len(data), **identity, "data": data.describe(),
                          "engine_info": engine.info.as_dict()}
                scores, seconds = engine_scores(engine, clean_images, labels, data.num_classes, settings.batch_size)
                result.records.append(make_record(**common, attack="none", params={}, scores=scores,
                                                  queries=len(data), seconds=seconds))
                if on_work is not None:
                    on_work("images", f"{target} on {choice.label}", len(data))
                for (source_name, _), example_set in result.example_sets.items():
                    scores, seconds = engine_scores(engine, example_set.examples.images, labels, data.num_classes,
                                                    settings.batch_size)
                    attack = example_set.attack
                    source = models[source_name]
                    user_source = {"source_target": source.describe()} if isinstance(source, Target) else {}
                    result.records.append(make_record(
                        **common, attack=attack.name, params={**attack.params(), "seed": settings.seed},
                        scores=scores, queries=len(data), seconds=seconds, source_model=source_name,
                        source_engine=SOURCE_ENGINE, source_precision=SOURCE_PRECISION,
                        white_box=source_name == target,
                        examples_sha256=example_set.examples.provenance.get("images_sha256"), **user_source))
                    if on_work is not None:
                        on_work("images", f"{target} on {choice.label}", len(data))
    result.eval_seconds = time.perf_counter() - start
    return result


def _loaded(model: TransferModel, data: SegmentationData) -> TransferModel:
    return torch_model(model, data) if isinstance(model, Target) and model.kind == "builtin" else model


def _target_engine(model: TransferModel, choice: EngineChoice, data: SegmentationData, settings: TransferSettings,
                   calibration: SegmentationData | None) -> tuple[Engine, dict[str, Any]]:
    """The engine (not yet entered) of one target on one choice, and the record fields that identify it."""
    if isinstance(model, Target):  # a user's model (built-in Targets were loaded by run_transfer)
        engine = target_engine(model, choice.engine, choice.precision, settings.engine_device, data,
                               calibration=calibration, max_batch=settings.batch_size)
        return engine, {"size": None, "weights_sha256": model.sha256, "target": model.describe()}
    network, source = model
    engine = create_engine(choice.engine, network, source, data, precision=choice.precision,
                           device=settings.engine_device, calibration=calibration, max_batch=settings.batch_size)
    return engine, {"size": source.get("size", settings.size), "weights_sha256": source["sha256"]}
