"""Images per second of every usable engine and precision, against torch eager on the same device.

Same model, same batch, same images and thread count for every engine. Each engine is timed in ``--rounds`` rounds
that alternate between the engines (so load from other processes affects all alike); a round
runs whole batches for ``--seconds`` after a warm-up, and the median round is reported, with
its ratio to torch eager on the same device (> 1: faster than torch). Needs a trained checkpoint
(``python -m harness train --model fcn-resnet50``); int8 is calibrated on training images.

    .venv/bin/python benchmarks/engine_throughput.py [--model fcn-resnet50] [--batch-size 8]
        [--seconds 2] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
import types

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from engines.availability import ENGINES, PRECISIONS, availability
from engines.base import Engine
from engines.factory import create_engine
from harness.commands.common import load_model
from harness.data import load_data
from harness.errors import HarnessError
from harness.fileio import cache_dir, write_json_atomic
from harness.models import MODELS
from reports.results import environment

WARMUP_BATCHES = 3


def _round(engine: Engine, images: np.ndarray, seconds: float) -> float:
    """Images per second over whole batches for at least ``seconds`` (and at least 3 batches)."""
    done, start = 0, time.perf_counter()
    while True:
        engine.infer(images)
        done += len(images)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and done >= 3 * len(images):
            return done / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fcn-resnet50", choices=list(MODELS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one timed round per engine")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="CPU threads of torch and ONNX Runtime (default: all cores; 1 is robust on a busy "
                        "machine)")
    parser.add_argument("--json", default=str(cache_dir() / "benchmarks" / "engine_throughput.json"))
    args = parser.parse_args(argv)
    console = Console()
    torch.set_num_threads(args.threads)
    try:
        val = load_data("synthetic", "val", limit=args.batch_size)
        calibration = load_data("synthetic", "train", limit=64)
        model, source = load_model(types.SimpleNamespace(model=args.model, size="reduced", checkpoint=None,
                                                         weights=None, data="synthetic"), val)
        images = val.tensors(slice(0, args.batch_size))[0].numpy()
        variants = [(a.engine, a.device, p) for a in availability() if a.usable and a.engine in args.engines
                    for p in PRECISIONS[a.engine]]
        rates: dict[tuple[str, str, str], list[float]] = {v: [] for v in variants}
        with contextlib.ExitStack() as stack:
            engines = {}
            for name, device, precision in variants:
                console.print(f"preparing {name} {precision} on {device} ...", highlight=False)
                engine = stack.enter_context(create_engine(
                    name, model, source, val, precision=precision, device=device, max_batch=args.batch_size,
                    calibration=calibration if precision == "int8" else None, threads=args.threads))
                for _ in range(WARMUP_BATCHES):
                    engine.infer(images)
                engines[(name, device, precision)] = engine
            for _ in range(args.rounds):
                for variant, engine in engines.items():
                    rates[variant].append(_round(engine, images, args.seconds))
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code

    rows = []
    for (name, device, precision), values in rates.items():
        baseline = statistics.median(rates[("torch", device, "fp32")]) if ("torch", device, "fp32") in rates else None
        rate = statistics.median(values)
        rows.append({"engine": name, "device": device, "precision": precision, "images_per_second": round(rate, 2),
                     "rounds": [round(v, 2) for v in values],
                     "ratio_to_torch": round(rate / baseline, 3) if baseline else None})
    table = Table(title=f"{args.model} (reduced), batch {args.batch_size}, {images.shape[2]}x{images.shape[3]} px, "
                  f"{args.threads} thread(s): median of {args.rounds} rounds of {args.seconds:g} s")
    for column in ("engine", "device", "precision", "images/s", "x torch eager"):
        table.add_column(column, justify="right" if column in ("images/s", "x torch eager") else "left")
    for r in rows:
        table.add_row(r["engine"], r["device"], r["precision"], f"{r['images_per_second']:.1f}",
                      "-" if r["ratio_to_torch"] is None else f"{r['ratio_to_torch']:.2f}")
    console.print(table)
    write_json_atomic(args.json, {"benchmark": "engine_throughput", "model": args.model, "size": "reduced",
                                  "batch_size": args.batch_size, "image_size": list(images.shape[2:]),
                                  "threads": args.threads,
                                  "seconds_per_round": args.seconds, "rounds": args.rounds,
                                  "environment": environment(), "results": rows})
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
