"""PGD's overhead over the raw gradient computation it is built on.

For each reduced model: the wall time of one PGD iteration (the harness's PGD, timed through
its public call, divided by its number of steps) over the wall time of one raw forward +
input-gradient backward of the same model and batch (plain ``F.cross_entropy`` and
``torch.autograd.grad``). The target is a ratio <= 1.10. Timings alternate between the two,
and the ratio is taken between the fastest runs (the least disturbed by other processes on a
shared machine); the medians are in the JSON too.

    .venv/bin/python benchmarks/pgd_overhead.py [--models ...] [--batch-size 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from harness.attacks import PGD
from harness.data import load_data
from harness.data.base import IGNORE_INDEX
from harness.fileio import write_json_atomic
from harness.models import MODELS, build_model
from reports.results import environment

TARGET = 1.10


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def measure(name: str, images: torch.Tensor, labels: torch.Tensor, steps: int, repeats: int,
            device: torch.device) -> dict[str, float | int | str]:
    """Milliseconds of one raw forward+backward and of one PGD iteration (fastest and median run), and
    the ratio of the fastest runs."""
    torch.manual_seed(0)
    model = build_model(name, 7).to(device)
    images, labels = images.to(device), labels.to(device)
    pgd = PGD(8, steps=steps)

    def raw() -> None:
        x = images.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x), labels, ignore_index=IGNORE_INDEX)
        torch.autograd.grad(loss, x)

    def raw_steps() -> None:
        for _ in range(steps):
            raw()

    raw_steps()  # warm-up: allocator, kernels, thread pool
    pgd(model, images, labels)
    raw_times, pgd_times = [], []
    for _ in range(repeats):
        raw_times.append(_timed(raw_steps, device) / steps)
        pgd_times.append(_timed(lambda: pgd(model, images, labels), device) / steps)
    return {"model": name, "batch_size": len(images), "image_size": images.shape[-1], "steps": steps,
            "repeats": repeats, "raw_ms": 1000 * min(raw_times), "pgd_iteration_ms": 1000 * min(pgd_times),
            "ratio": min(pgd_times) / min(raw_times), "raw_median_ms": 1000 * statistics.median(raw_times),
            "pgd_iteration_median_ms": 1000 * statistics.median(pgd_times),
            "median_ratio": statistics.median(pgd_times) / statistics.median(raw_times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="PGD iterations per timed run (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", default="pgd_overhead.json", help="output file (default pgd_overhead.json)")
    args = parser.parse_args(argv)
    if min(args.batch_size, args.steps, args.repeats) < 1 or args.image_size < 32:
        parser.error("--batch-size, --steps and --repeats must be >= 1, --image-size >= 32")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = load_data("synthetic", "val", size=args.image_size, limit=args.batch_size)
    images, labels = data.tensors(slice(0, args.batch_size))

    rows = [measure(name, images, labels, args.steps, args.repeats, device) for name in args.models]
    table = Table(title=f"PGD per-iteration time / raw forward+backward ({device}, "
                        f"{torch.get_num_threads()} threads, batch {args.batch_size}, "
                        f"{args.image_size} px, reduced models)")
    for column in ("model", "raw fwd+bwd (ms)", "PGD iteration (ms)", "ratio", "median ratio", f"<= {TARGET}"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(str(row["model"]), f"{row['raw_ms']:.1f}", f"{row['pgd_iteration_ms']:.1f}",
                      f"{row['ratio']:.3f}", f"{row['median_ratio']:.3f}", "yes" if row["ratio"] <= TARGET else "NO")
    Console().print(table)
    write_json_atomic(args.json, {"benchmark": "pgd_overhead", "target_ratio": TARGET, "device": str(device),
                                  "threads": torch.get_num_threads(), "environment": environment(), "rows": rows})
    print(f"wrote {args.json}")
    return 0 if all(row["ratio"] <= TARGET for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
