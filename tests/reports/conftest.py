"""A suite run directory written file by file as harness/suite/runner.py writes it (no model is trained or run).

``build_run(path)`` writes results.json (with write_results), suite.json, data/pgd_sweep.json,
data/square_curves.json, data/examples.json and data/examples.npz of a small two-model run, and returns
``path``. Session-scoped, so property-based tests (hypothesis) can use it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.fileio import write_json_atomic
from harness.metrics import Scores
from reports.results import make_record, write_results

CLASSES = ["background", "disc", "rectangle", "triangle", "ring", "cross", "star"]
MODELS = ("fcn8s-vgg16", "fcn-resnet50")
PGD = {"eps": 8.0, "steps": 2, "alpha": 2.0, "random_start": True, "seed": 0}
SQUARE = {"eps": 8.0, "queries": 6, "p_init": 0.05, "loss": "ce", "seed": 0, "curve_every": 0}


def _record(model: str, attack: str, params: dict[str, Any], experiments: list[str], pa: float, engine: str = "torch",
            n: int = 4, **extra: Any) -> dict[str, Any]:
    per_class = [pa, 0.5 * pa, None, 0.25, 0.0, None, 0.1]
    return make_record(model=model, engine=engine, precision="fp32", attack=attack, params=params, n_images=n,
                       scores=Scores(pa, 0.4 * pa, per_class, 4000), queries=n, seconds=0.02, size="reduced",
                       device="cpu", experiments=experiments, **extra)


def run_records() -> list[dict[str, Any]]:
    records = []
    for i, model in enumerate(MODELS):
        base = 0.8 - 0.1 * i
        records += [_record(model, "none", {}, ["table1", "transfer"] + (["sweep"] if i else []), base),
                    _record(model, "fgsm", {"eps": 8.0, "seed": 0}, ["table1"], base - 0.2),
                    _record(model, "pgd", PGD, ["table1"], base - 0.4)]
    records.append(_record("fcn-resnet50", "pgd", {**PGD, "steps": 1, "alpha": 8.0}, ["sweep"], 0.5))
    for engine in ("torch", "ort"):
        for source in MODELS:
            for target in MODELS:
                records.append(_record(target, "pgd", PGD, ["transfer"], 0.45 + 0.1 * (source != target), engine,
                                       source_model=source, source_engine="torch"))
    records += [_record(m, "none", {}, ["transfer"], 0.8 - 0.1 * i, "ort") for i, m in enumerate(MODELS)]
    records.append(_record("fcn-resnet50", "none", {}, ["square"], 0.7, "ort", n=2))
    for init in ("vertical", "horizontal"):
        records.append(_record("fcn-resnet50", "square", {**SQUARE, "init": init}, ["square"], 0.6, "ort", n=2,
                               engine_seconds=0.01))
    return records


def suite_document() -> dict[str, Any]:
    models = {name: {"size": "reduced", "checkpoint": f"/cache/checkpoints/{name}.safetensors", "sha256": "ab" * 32,
                     "train": {"epochs": 1, "batch_size": 16, "lr": 0.003, "weight_decay": 0.0001, "seed": 0,
                               "seconds": 0.1, "n_images": 32, "backbone_weights": None},
                     "val_metrics": {"pixel_accuracy": 0.7, "mean_iou": 0.1, "per_class_iou": [0.7] * 7,
                                     "n_images": 200}} for name in MODELS}
    return {"harness_version": "0.1.0", "created": "2026-12-01T09:27:42+00:00",
            "suite": {"name": "tiny", "source": "tiny.toml", "batch_size": 4, "threads": None,
                      "data": {"source": "synthetic", "root": None, "image_size": None, "seed": 0},
                      "check": {"tolerance": 0.5, "attack_tolerance": {"square": 3.0}}},
            "seconds": 10.1, "phases": {"models": 0.4, "export": 8.2, "table1": 0.2}, "trained": list(MODELS),
            "models": models}


def curves_document() -> dict[str, Any]:
    engine = {"name": "ort", "precision": "fp32", "device": "cpu (CPUExecutionProvider)"}
    return {"curves": [{"model": "fcn-resnet50", "size": "reduced", "engine": engine, "n_images": 2,
                        "clean_pixel_accuracy": 0.7,
                        "curves": [{"params": {**SQUARE, "init": init},
                                    "points": [{"queries": 1, "pixel_accuracy": 0.7, "mean_loss": 2.03},
                                               {"queries": 6, "pixel_accuracy": 0.6, "mean_loss": 2.5}]}
                                   for init in ("vertical", "horizontal")]}]}


def example_arrays(n: int = 2, size: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.1, 0.9, (n, 3, size, size)).astype(np.float32)
    adversarial = np.clip(clean + rng.choice([-8 / 255, 8 / 255], clean.shape), 0, 1).astype(np.float32)
    labels = rng.integers(0, len(CLASSES), (n, size, size)).astype(np.uint8)
    labels[:, 0] = 255
    return {"clean": clean, "adversarial": adversarial, "labels": labels,
            "clean_pred": rng.integers(0, len(CLASSES), (n, size, size)).astype(np.uint8),
            "adversarial_pred": rng.integers(0, len(CLASSES), (n, size, size)).astype(np.uint8),
            "ids": np.array([f"img{i}" for i in range(n)])}


def write_run(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    records = run_records()
    write_results(path / "results.json", records)
    write_json_atomic(path / "suite.json", suite_document())
    sweep = [r for r in records if "sweep" in r["experiments"]]
    write_json_atomic(path / "data" / "pgd_sweep.json", {"eps": 8.0, "steps": [1, 2], "alpha": "eps / steps",
                                                         "n_images": 4, "records": sweep})
    write_json_atomic(path / "data" / "square_curves.json", curves_document())
    with open(path / "data" / "examples.npz", "wb") as f:
        np.savez_compressed(f, **example_arrays())
    write_json_atomic(path / "data" / "examples.json", {
        "model": "fcn-resnet50", "attack": "pgd", "label": "pgd-2", "params": PGD, "eps": 8.0,
        "class_names": CLASSES, "n_images": 2})
    return path


@pytest.fixture(scope="session")
def build_run() -> Callable[[Path], Path]:
    """``build_run(path)``: write a valid suite run directory at ``path`` (see the module docstring)."""
    return write_run
