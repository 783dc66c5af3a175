"""The suite's black-box experiment: the Square Attack (or, with ``[square] attack = "hardlabel"``, the hard-label
attack, which reads class maps only) through a deployed engine, once per initialisation (the paper's Figure 4).
Records carry the attack's name (``square``, ``hardlabel``) and its parameters as ``blackbox --json`` writes them.

Each run's state is saved in the cache (``harness.attacks.square_state``) under a key of everything that
determines it (weights, engine, images, attack parameters): a finished run is reused as it is, an
interrupted one continues where it stopped, and anything else starts afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engines.base import Engine
from engines.factory import create_engine
from harness import distributed
from harness.attacks.hard_label import HardLabelAttack, HardLabelConfig, HardLabelState
from harness.attacks.square import SquareAttack, SquareConfig, SquareState
from harness.attacks.square_state import load_state, run_context, save_state, state_path
from harness.data.base import SegmentationData
from harness.errors import HarnessError
from harness.metrics import ConfusionMatrix
from harness.suite.config import SquareSpec
from harness.transfer import LoadedModel, engine_scores
from reports.results import make_record

SAVE_EVERY_ITERATIONS = 50  # an interrupted suite loses at most this many iterations of a run

# on_progress(description, queries spent so far in this run, the run's total budget)
ProgressCallback = Callable[[str, int, int], None]
Config = SquareConfig | HardLabelConfig
State = SquareState | HardLabelState


@dataclass(frozen=True)
class SquareSubject:
    """One model the Square Attack runs against: its record name, what identifies it (``identity``: the
    checkpoint's or the target file's sha256, the card too for a user's target: it keys the saved runs),
    the engine and precision it runs on, how to open that engine, and the fields every record of it carries
    (``size``, ``weights_sha256``, a user's ``target``...)."""

    name: str
    size: str | None
    identity: str
    engine: str
    precision: str
    open: Callable[[], Engine]
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class SquareOutcome:
    """Records (per model: the clean record and one per init) and one curve document per model, the data of
    Figure 4: ``{"model", "size", "attack", "engine", "n_images", "clean_pixel_accuracy", "curves": [{"params",
    "points"}]}`` (points: ``{"queries", "pixel_accuracy", "mean_loss"}``, the ``blackbox --curve`` format)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    curves: list[dict[str, Any]] = field(default_factory=list)


def configs(spec: SquareSpec) -> list[Config]:
    """One attack configuration per init of ``spec``, of the attack it names (validated)."""
    if spec.attack == "hardlabel":
        made: list[Config] = [HardLabelConfig(eps=spec.eps, queries=spec.queries, init=init, seed=spec.seed,
                                              colour=spec.colour) for init in spec.inits]
    else:
        made = [SquareConfig(eps=spec.eps, queries=spec.queries, p_init=spec.p_init, init=init, loss=spec.loss,
                             seed=spec.seed, p_schedule=spec.p_schedule, colour=spec.colour) for init in spec.inits]
    for config in made:
        config.validate()
    return made


def builtin_subjects(models: Mapping[str, LoadedModel], spec: SquareSpec, data: SegmentationData,
                     device: str | None = None, calibration: SegmentationData | None = None
                     ) -> list[SquareSubject]:
    """The built-in models of ``spec`` through ``spec.engine``/``spec.precision`` on ``device``."""
    subjects = []
    for name in spec.models:
        model, source = models[name]

        def open_engine(model: Any = model, source: Mapping[str, Any] = source) -> Engine:
            return create_engine(spec.engine, model, source, data, precision=spec.precision, device=device,
                                 calibration=calibration if spec.precision == "int8" else None)

        subjects.append(SquareSubject(name, source["size"], source["sha256"], spec.engine, spec.precision,
                                      open_engine, {"size": source["size"], "weights_sha256": source["sha256"]}))
    return subjects


def run_square(subjects: Sequence[SquareSubject], spec: SquareSpec, data: SegmentationData, batch_size: int = 16,
               on_progress: ProgressCallback | None = None) -> SquareOutcome:
    """The attack of ``spec`` on every subject, once per init, with the clean scores of the same images
    through the same engine (``batch_size`` images per call)."""
    images = data.tensors(slice(None))[0].numpy()
    labels = data.labels.astype(np.int64)
    outcome = SquareOutcome()
    for subject in subjects:
        name = subject.name
        with subject.open() as engine:
            info = engine.info.as_dict()
            clean, clean_seconds = engine_scores(engine, images, labels, data.num_classes, batch_size)
            common = {"model": name, "engine": subject.engine, "precision": subject.precision,
                      "n_images": len(data), **subject.fields, "data": data.describe(), "engine_info": info,
                      "experiments": ["square"]}
            outcome.records.append(make_record(**common, attack="none", params={}, scores=clean, queries=len(data),
                                               seconds=clean_seconds))
            curves = []
            for config in configs(spec):
                context = run_context(name, subject.size or "", subject.identity, info, data.describe(), len(data),
                                      config)
                label = f"{name} {subject.engine} {subject.precision} {config.init}"
                state, reused = _run(engine, config, context, images, labels, label, on_progress, data.num_classes)
                confusion = ConfusionMatrix(data.num_classes)
                confusion.update(state.best_pred, labels)
                params = {k: v for k, v in config.as_dict().items() if k != "curve_every"}
                outcome.records.append(make_record(
                    **common, attack=spec.attack, params=params, scores=confusion.scores(),
                    queries=int(state.queries.sum()), seconds=state.seconds,
                    engine_seconds=round(state.engine_seconds, 4), queries_per_image_max=int(state.queries.max()),
                    reused=reused))
                curves.append({"params": config.as_dict(), "points": [vars(p) for p in state.curve]})
        outcome.curves.append({"model": name, "size": subject.size, "attack": spec.attack, "engine": info,
                               "data": data.describe(),
                               "n_images": len(data), "clean_pixel_accuracy": clean.pixel_accuracy, "curves": curves})
    return outcome


def _run(engine: Engine, config: Config, context: dict[str, Any], images: np.ndarray, labels: np.ndarray,
         label: str, on_progress: ProgressCallback | None, num_classes: int | None = None
         ) -> tuple[State, bool]:
    """The finished run: the saved one when finished, else continued from its saved state or started afresh.
    A saved state that is unreadable, of another run or breaks a guarantee of the attack (``load_state``, with
    the engine's ``num_classes``) is replaced. Returns (state, whether the saved run was reused as it was)."""
    path = state_path(context, prefix="suite-", config=config)  # each attack's runs in its own cache folder
    def saved() -> State | None:
        try:
            return load_state(path, context, config, images, labels, num_classes) if path.is_file() else None
        except HarnessError:
            return None  # unreadable or from another run: start afresh and replace it

    state = distributed.from_main(saved)  # the ranks of a lockstep run start from the same state
    total = len(images) * config.queries
    if state is not None and state.finished:
        if on_progress is not None:
            on_progress(f"{label} (stored)", total, total)
        return state, True

    def after_iteration(current: State) -> None:
        if on_progress is not None:
            on_progress(label, int(current.queries.sum()), total)
        if current.iteration % SAVE_EVERY_ITERATIONS == 0:
            save_state(path, current, context)

    attack = HardLabelAttack(config) if isinstance(config, HardLabelConfig) else SquareAttack(config)
    state = attack.run(engine, images, labels, state, after_iteration)
    save_state(path, state, context)
    if on_progress is not None:
        on_progress(label, total, total)
    return state, False
