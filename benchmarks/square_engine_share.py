"""Share of the Square Attack's wall time spent inside the engine, against ONNX Runtime.

The attack's own work per iteration (drawing squares, the loss oracle, the predictions of the
accepted candidates, bookkeeping) should be small next to the engine call it makes: the target
is >= 90 % of the wall time inside the engine (``Engine.seconds``: the time inside ``_run``, the
ONNX Runtime session itself). For each model size and number of images attacked at once, the
median over ``--repeats`` runs of ``--queries`` queries per image is reported, with the attack's
overhead per iteration in milliseconds.

The target is judged at the paper's width (``--sizes paper``): the model of the paper's Figure 4.
Its weights come from ``train --size paper`` when there is such a checkpoint; otherwise the
network is freshly initialised (seed 0), which is enough here because the engine's time does not
depend on the weights' values (the table says which). The reduced width, the harness's CPU
stand-in, has 64x fewer multiply-adds and shows the worst case. Needs a trained reduced
checkpoint (``python -m harness train --model fcn-resnet50``).

    .venv/bin/python benchmarks/square_engine_share.py [--model fcn-resnet50] [--sizes reduced paper]
        [--images 1 8 16] [--queries 100] [--repeats 3] [--json square_engine_share.json]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import types
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from engines.base import Engine
from engines.factory import create_engine
from harness.attacks.square import SquareAttack, SquareConfig
from harness.checkpoints import default_checkpoint_path
from harness.commands.common import load_model
from harness.data import data_key, load_data
from harness.data.base import SegmentationData
from harness.errors import HarnessError
from harness.fileio import write_json_atomic
from harness.models import MODELS, SIZES, SegmentationModel, build_model
from reports.results import environment

TARGET = 0.90
JUDGED_SIZE = "paper"


def measure(engine: Engine, data: SegmentationData, n_images: int, queries: int, repeats: int
            ) -> dict[str, float | int]:
    """Median engine share, and the medians behind it, of ``repeats`` attacks on the first ``n_images``."""
    images, labels = (tensor.numpy() for tensor in data.tensors(slice(0, n_images)))
    engine.infer(images)  # warm-up: session, thread pool, allocator
    runs = []
    for repeat in range(repeats):
        before, asked = engine.seconds, engine.queries
        state = SquareAttack(SquareConfig(eps=8.0, queries=queries, seed=repeat)).run(engine, images, labels)
        inside = engine.seconds - before
        runs.append({"share": inside / state.seconds, "infer_share": state.engine_seconds / state.seconds,
                     "wall_s": state.seconds, "engine_s": inside, "iterations": 1 + state.iteration,
                     "images_per_call": (engine.queries - asked) / (1 + state.iteration),
                     "engine_ms": 1000 * inside / (1 + state.iteration),
                     "overhead_ms": 1000 * (state.seconds - inside) / (1 + state.iteration)})
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    return {"n_images": n_images, "queries": queries, "repeats": repeats, **median,
            "queries_per_s": n_images * median["iterations"] / median["wall_s"]}


def model_of_size(name: str, size: str, data: SegmentationData) -> tuple[SegmentationModel, dict[str, Any], str]:
    """The trained checkpoint of ``size`` if there is one, else (for timing only) a fresh network,
    with its source description and the word for the table: trained or untrained."""
    if size == "reduced" or default_checkpoint_path(name, size, data_key(data)).is_file():
        model, source = load_model(types.SimpleNamespace(model=name, size=size, checkpoint=None, weights=None,
                                                         data="synthetic"), data)
        return model, source, "trained"
    torch.manual_seed(0)
    model = build_model(name, data.num_classes, size)
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.numpy().tobytes())
    return model, {"model": name, "size": size, "sha256": digest.hexdigest()}, "untrained"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=list(MODELS), default="fcn-resnet50")
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES),
                        help="model widths (default: reduced paper); the target is judged at paper")
    parser.add_argument("--images", type=int, nargs="+", default=[1, 8, 16],
                        help="numbers of images attacked at once (default 1 8 16)")
    parser.add_argument("--queries", type=int, default=100, help="query budget per image (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; the median is shown (default 3)")
    parser.add_argument("--json", default="square_engine_share.json",
                        help="output file (default square_engine_share.json)")
    args = parser.parse_args(argv)
    if min(*args.images, args.queries, args.repeats) < 1:
        parser.error("--images, --queries and --repeats must be >= 1")
    data = load_data("synthetic", "val", limit=max(args.images))
    rows = []
    try:
        for size in dict.fromkeys(args.sizes):
            model, source, weights = model_of_size(args.model, size, data)
            with create_engine("ort", model, source, data) as engine:
                info = engine.info
                rows += [{"size": size, "weights": weights, "engine": info.as_dict(),
                          **measure(engine, data, n, args.queries, args.repeats)} for n in args.images]
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    table = Table(title=f"Square Attack against ort ({info.device}, {info.library_version}): time inside the "
                        f"engine, {args.model}, {data.image_size[0]} px, {args.queries} queries per image, "
                        f"median of {args.repeats}; target judged at the {JUDGED_SIZE} width")
    for column in ("size", "weights", "images", "per call", "engine ms/it", "attack ms/it", "in engine",
                   "queries/s", f">= {TARGET:.0%}"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["size"], row["weights"], str(row["n_images"]), f"{row['images_per_call']:.1f}",
                      f"{row['engine_ms']:.2f}",
                      f"{row['overhead_ms']:.2f}", f"{100 * row['share']:.1f} %", f"{row['queries_per_s']:.0f}",
                      "yes" if row["share"] >= TARGET else "no")
    Console(width=max(Console().width, 110)).print(table)
    write_json_atomic(args.json, {"benchmark": "square_engine_share", "target_share": TARGET,
                                  "judged_size": JUDGED_SIZE, "model": args.model, "environment": environment(),
                                  "rows": rows})
    print(f"wrote {args.json}")
    judged = [row for row in rows if row["size"] == JUDGED_SIZE]
    if not judged:
        print(f"nothing judged: the target applies to the {JUDGED_SIZE} width (--sizes ... {JUDGED_SIZE})")
    return 0 if judged and all(row["share"] >= TARGET for row in judged) else 1


if __name__ == "__main__":
    sys.exit(main())
