"""The suite's white-box experiments: the paper's Table 1, the Figure 3 PGD sweep, and the example images
of Figures 1-2.

Adversarial examples come from :func:`harness.transfer.adversarial_examples`: crafted in PyTorch and stored
with their provenance, so a re-run, the transfer experiment (same images, ε, seed and batch size) and the
``transfer`` command reuse them. Scores are taken through the torch engine, ``batch_size`` images per call,
exactly as the transfer experiment scores its torch fp32 cells: a Table 1 cell equals the white-box cell
(*) of Table 2 for the same attack.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import Engine
from engines.factory import create_engine
from harness import distributed
from harness.attacks import PGD, Attack, WorstCase
from harness.attacks.store import AdversarialSet, load_adversarial, save_adversarial
from harness.attacks.worst_case import WorstCaseScores, WorstCaseTally
from harness.data.base import SegmentationData
from harness.errors import HarnessError
from harness.models.normalize import SegmentationModel
from harness.suite.config import SweepSpec, WhiteboxSpec
from harness.transfer import (
    ExampleSet,
    LoadedModel,
    TransferSettings,
    WorkCallback,
    adversarial_examples,
    engine_scores,
    example_path,
    example_provenance,
    parse_attacks,
    provenance_matches,
)
from reports.results import make_record


@dataclass
class WhiteboxOutcome:
    """Records (clean and adversarial, torch fp32) and the example sets by (model, attack label)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    sets: dict[tuple[str, str], ExampleSet] = field(default_factory=dict)


def table1_attacks(spec: WhiteboxSpec, model: str) -> list[Attack]:
    """The columns of ``model``'s row: every column not skipped for it, with the attacks' default steps sizes."""
    columns = [c for c in spec.columns if c not in spec.skip.get(model, ())]
    return parse_attacks(",".join(columns), spec.eps)


def sweep_attacks(spec: SweepSpec) -> list[Attack]:
    """PGD with α = ε / steps for each count, as in the paper's Figure 3."""
    return [PGD(spec.eps, steps, alpha=spec.eps / steps) for steps in spec.steps]


def gradients(attacks: Sequence[Attack], n_images: int) -> int:
    """Image gradients the attacks cost on ``n_images`` images (for progress totals)."""
    return n_images * sum(a.iterations for a in attacks)


def run_whitebox(models: Mapping[str, LoadedModel], attacks: Mapping[str, Sequence[Attack]],
                 data: SegmentationData, settings: TransferSettings, experiment: str,
                 on_work: WorkCallback | None = None) -> WhiteboxOutcome:
    """For each model of ``attacks`` (name -> its attacks): the clean record of ``data`` and one record per
    attack, all through the torch engine. Every record carries ``experiments: [experiment]`` and adversarial
    records ``reused`` (examples read from the store) and ``seconds`` (crafting time now, 0 when reused)."""
    outcome = WhiteboxOutcome()
    clean_images = data.tensors(slice(None))[0].numpy()
    for name, model_attacks in attacks.items():
        model, source = models[name]
        common = {"model": name, "engine": "torch", "precision": "fp32", "n_images": len(data),
                  "size": source["size"], "data": data.describe(), "weights_sha256": source["sha256"],
                  "device": settings.device, "experiments": [experiment]}
        with create_engine("torch", model, source, data, device=settings.device,
                           max_batch=settings.batch_size) as engine:
            scores, seconds = engine_scores(engine, clean_images, data.labels, data.num_classes, settings.batch_size)
            outcome.records.append(make_record(**common, attack="none", params={}, scores=scores, queries=len(data),
                                               seconds=seconds))
            for attack in model_attacks:
                extra: dict[str, Any] = {}
                if isinstance(attack, WorstCase):
                    example_set, worst = worst_case_examples(name, models[name], engine, data, attack, settings,
                                                             on_work)
                    scores, extra = worst.scores, worst.record_fields()
                else:
                    example_set = adversarial_examples(name, models[name], data, attack, settings, on_work)
                    scores, _ = engine_scores(engine, example_set.examples.images, data.labels, data.num_classes,
                                              settings.batch_size)
                outcome.sets[name, attack.label] = example_set
                outcome.records.append(make_record(
                    **common, attack=attack.name, params={**attack.params(), "seed": settings.seed}, scores=scores,
                    queries=len(data) * attack.iterations, seconds=example_set.seconds,
                    batch_size=settings.batch_size, reused=example_set.reused, **extra))
    return outcome


def worst_case_examples(name: str, loaded: LoadedModel, engine: Engine, data: SegmentationData, attack: WorstCase,
                        settings: TransferSettings, on_work: WorkCallback | None = None
                        ) -> tuple[ExampleSet, WorstCaseScores]:
    """The worst case of ``attack``'s members on model ``name``, from the members' own example sets (crafted or
    reused like any column's, so a member that is also a column is crafted once) scored through ``engine``.

    The per-image minimum's images are stored as ``attack``'s example set (what ``adversarial_examples`` would
    craft: every member runs with the same seeds); the scores are :class:`WorstCaseTally`'s (pixel accuracy
    from that minimum, mIoU from the greedy selection over images).
    """
    member_sets = [adversarial_examples(name, loaded, data, member, settings, on_work) for member in attack.members]
    tally = WorstCaseTally(attack.member_labels, data.num_classes)
    for _, batch in distributed.batches(len(data), settings.batch_size):
        tally.add(np.stack([engine.infer(np.ascontiguousarray(s.examples.images[batch])).argmax(1)
                            for s in member_sets]), data.labels[batch])
    tally.gather_ranks()
    worst = tally.result()
    images = np.stack([member_sets[m].examples.images[i] for i, m in enumerate(worst.accuracy_winner)])
    provenance = example_provenance(name, loaded[1], data, attack, settings)
    path = example_path(provenance, data.ids)
    reused = all(s.reused for s in member_sets)
    stored = _stored(path)
    if not distributed.everywhere(stored is not None and provenance_matches(stored, provenance, data)
                                  and np.array_equal(stored.images, images)):
        stored = save_adversarial(path, images, data.labels, list(data.ids), provenance)
        distributed.barrier()  # later looks at the cache see rank 0's file on every rank that shares it
    example_set = ExampleSet(name, attack, stored, path, reused, sum(s.seconds for s in member_sets))
    return example_set, worst


def _stored(path: Path) -> AdversarialSet | None:
    if not path.is_file():
        return None
    try:
        return load_adversarial(path)
    except HarnessError:
        return None  # damaged: written again


def example_arrays(model: SegmentationModel, source: Mapping[str, Any], example_set: ExampleSet,
                   data: SegmentationData, n_images: int) -> dict[str, np.ndarray]:
    """What the example figures (the paper's Figures 1-2) show for the first ``n_images`` images: ``clean`` and
    ``adversarial`` float32 (n, 3, H, W) in [0, 1], ``labels``, ``clean_pred`` and ``adversarial_pred`` uint8
    (n, H, W) from the torch engine, and ``ids``."""
    clean = data.tensors(slice(0, n_images))[0].numpy()
    adversarial = np.ascontiguousarray(example_set.examples.images[:n_images])
    with create_engine("torch", model, source, data, max_batch=n_images) as engine:
        clean_pred = engine.infer(clean).argmax(1).astype(np.uint8)
        adversarial_pred = engine.infer(adversarial).argmax(1).astype(np.uint8)
    return {"clean": clean, "adversarial": adversarial, "labels": data.labels[:n_images],
            "clean_pred": clean_pred, "adversarial_pred": adversarial_pred, "ids": np.array(data.ids[:n_images])}


def defended_eps_attacks(spec: WhiteboxSpec) -> dict[float, list[Attack]]:
    """The defended model's accuracy over eps: ``defended_columns`` at each radius of ``defended_eps`` (0-255 scale),
    with the attacks' default step sizes for that radius (the radius of Table 1 gives Table 1's attacks)."""
    return {eps: parse_attacks(",".join(spec.defended_columns), eps) for eps in spec.defended_eps}
