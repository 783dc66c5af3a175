"""The default thread policy against 1 thread and all cores, on a quiet machine and beside busy neighbours.

Rows: a training step of the reduced fcn-resnet50 (16 images, 64 px), one PGD iteration on the same batch,
one ONNX Runtime batch of the same model (exported to ONNX in a temporary folder). Columns: the harness
default (``harness.threads.set_threads``: OMP_NUM_THREADS unset, so the load-aware choice), 1 thread
(OMP_NUM_THREADS=1) and all cores (OMP_NUM_THREADS=cores); optional extra columns: ``all-passive``
(all cores with OMP_WAIT_POLICY=PASSIVE) and ``procs`` (one process of 1 thread per core, each on its share
of the batch, run at once: processes instead of threads; for training an optimistic bound, as the
processes skip the gradient exchange). Conditions: quiet, and 1 or 2 busy-loop processes that the benchmark
starts and always stops (also on Ctrl-C or SIGTERM; they also exit on their own when the benchmark dies).

Each cell (condition x row x column) has its own fresh worker process, so OpenMP starts with that column's
settings; the workers of a row start one after the other, warm up, then serve ``--repeats`` rounds of timed
runs that alternate between the columns, so a change in the machine's load affects all alike. The table
shows the seconds per unit of work (the median of the runs; a run lasts at least 0.5 s) and each column's
ratio to the best of its row. Target: the default within 1.25x of the best in every row
(exit 1 when missed). Weights are random (seeded): the timing does not depend on training. Timings on a
machine that other work shares are indicative only.

    .venv/bin/python benchmarks/threads_under_load.py [--repeats 5] [--conditions quiet busy1 busy2]
        [--rows train pgd ort] [--columns default 1 all] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TARGET = 1.25
MODEL = "fcn-resnet50"
NUM_CLASSES = 7
BATCH, SIDE = 16, 64
ROWS = ("train", "pgd", "ort")
CONDITIONS = {"quiet": 0, "busy1": 1, "busy2": 2}
COLUMNS = ("default", "1", "all", "all-passive", "procs")
DEFAULT_COLUMNS = ("default", "1", "all")
MIN_RUN_S, MAX_UNITS_PER_RUN = 0.5, 1000
WORKER_TIMEOUT_S = 900  # for one answer of a worker (start-up or one timed run)
# A busy neighbour: spins until its parent (this benchmark) is gone, so it never outlives a killed run.
BUSY_LOOP = "import os, sys\nparent = int(sys.argv[1])\nwhile os.getppid() == parent:\n    sum(range(100_000))\n"
ROOT = Path(__file__).resolve().parents[1]


def _cores() -> int:
    sys.path.insert(0, str(ROOT))
    from harness.threads import usable_cores

    return usable_cores()


# ---------------------------------------------------------------- worker (one measurement, fresh process)

def _workload(row: str, onnx_path: str | None, batch: int) -> Any:
    """A zero-argument callable doing one unit of ``row``'s work."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from harness.attacks import PGD
    from harness.data.base import IGNORE_INDEX
    from harness.models import build_model

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, SIDE, SIDE, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (batch, SIDE, SIDE), generator=generator)
    if row == "ort":
        from engines.ort_engine import OrtEngine

        engine = OrtEngine(onnx_path).__enter__()  # the process ends after the measurement
        array = np.ascontiguousarray(images.numpy())
        return lambda: engine.infer(array)
    torch.manual_seed(0)
    model = build_model(MODEL, NUM_CLASSES)
    if row == "pgd":
        model.eval()
        pgd = PGD(8, steps=1)
        return lambda: pgd(model, images, labels)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = F.cross_entropy(model(images), labels, ignore_index=IGNORE_INDEX)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _worker(args: argparse.Namespace) -> int:
    """Serve timed runs: print a ready line, then one line of seconds per unit for each ``run`` read on stdin."""
    sys.path.insert(0, str(ROOT))
    from harness.threads import set_threads

    choice = set_threads()  # the column's environment decides: OMP_NUM_THREADS, or the load-aware default
    work = _workload(args.worker, args.onnx, args.batch)
    work()  # warm-up: allocator, kernels, thread pool
    print(json.dumps({"threads": choice.threads, "source": choice.source, "detail": choice.detail}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        # A timed run repeats the unit for at least MIN_RUN_S, so that timer and scheduler noise stay small.
        units, start = 0, time.perf_counter()
        while units < MAX_UNITS_PER_RUN:
            work()
            units += 1
            if time.perf_counter() - start >= MIN_RUN_S:
                break
        print(json.dumps((time.perf_counter() - start) / units), flush=True)
    return 0


# ---------------------------------------------------------------- parent

@contextmanager
def busy_neighbours(n: int) -> Iterator[list[subprocess.Popen]]:
    """``n`` busy-loop processes for the duration of the block; always stopped on the way out."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(os.getpid())],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
        time.sleep(0.5 if n else 0)  # let them reach the scheduler before anything is measured
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


def _column_env(column: str, cores: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if column in ("1", "procs"):
        env["OMP_NUM_THREADS"] = "1"
    elif column == "all":
        env["OMP_NUM_THREADS"] = str(cores)
    elif column == "all-passive":
        env.update(OMP_NUM_THREADS=str(cores), OMP_WAIT_POLICY="PASSIVE")
    return env  # "default": nothing set, so harness.threads decides


class _Cell:
    """One column of one row: its worker process(es), started fresh under the condition's load."""

    def __init__(self, row: str, column: str, cores: int, onnx_path: str) -> None:
        copies = cores if column == "procs" else 1
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", row, "--batch",
                   str(max(1, BATCH // copies)), "--onnx", onnx_path]
        self.errors = [tempfile.TemporaryFile("w+") for _ in range(copies)]  # a pipe could fill and block
        self.procs = [subprocess.Popen(command, env=_column_env(column, cores), stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=err, text=True) for err in self.errors]
        self.result: dict[str, Any] = {"processes": copies, "runs": []}

    def _reply(self, p: subprocess.Popen) -> Any:
        assert p.stdout is not None
        ready, _, _ = select.select([p.stdout], [], [], WORKER_TIMEOUT_S)
        line = p.stdout.readline() if ready else ""
        if not line:
            p.kill()
            p.wait(timeout=10)
            err = self.errors[self.procs.index(p)]
            err.seek(0)
            lines = err.read().strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"no answer within {WORKER_TIMEOUT_S} s")
        return json.loads(line)

    def ready(self) -> None:
        for p in self.procs:
            self.result.update(self._reply(p))

    def run(self) -> None:
        """One timed run; copies run at once, and a unit of work is done when the slowest copy is done."""
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write("run\n")
            p.stdin.flush()
        self.result["runs"].append(max(self._reply(p) for p in self.procs))

    def close(self) -> None:
        for p in self.procs:
            with contextlib.suppress(OSError, ValueError):
                if p.stdin:
                    p.stdin.close()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        for err in self.errors:
            err.close()


def _measure_row(row: str, columns: list[str], cores: int, repeats: int, onnx_path: str) -> dict[str, Any]:
    """Every column of ``row``: fresh workers, then ``repeats`` rounds that alternate between the columns (so a
    change in the machine's load affects all alike); each cell's seconds is the median of its runs."""
    cells: dict[str, _Cell] = {}
    out: dict[str, dict[str, Any]] = {}
    try:
        for column in columns:
            # One at a time: a starting worker must not see another one's start-up as load.
            cells[column] = _Cell(row, column, cores, onnx_path)
            try:
                cells[column].ready()
            except (RuntimeError, ValueError) as e:
                out[column] = {"error": str(e)}
        for _ in range(repeats):
            for column, cell in cells.items():
                if column in out:
                    continue
                try:
                    cell.run()
                except (RuntimeError, ValueError) as e:
                    out[column] = {"error": str(e)}
    finally:
        for cell in cells.values():
            cell.close()
    for column, cell in cells.items():
        if column not in out:
            out[column] = {**cell.result, "seconds": statistics.median(cell.result["runs"])}
    return out


def _export(directory: str) -> str:
    """The reduced fcn-resnet50 (random weights, seed 0) as an fp32 ONNX file in ``directory``."""
    import torch

    from exporters.onnx_export import export_onnx
    from harness.models import build_model

    torch.manual_seed(0)
    path = str(Path(directory) / f"{MODEL}.fp32.onnx")
    export_onnx(build_model(MODEL, NUM_CLASSES), path, {"model": MODEL, "size": "reduced"})
    return path


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through busy_neighbours' finally, as Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell after one warm-up (default 5)")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--columns", nargs="+", choices=COLUMNS, default=list(DEFAULT_COLUMNS),
                        help="policies to compare (default: default 1 all; 'default' is needed for the target)")
    parser.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS))
    parser.add_argument("--json", help="output file (default: HARNESS_CACHE/benchmarks/threads_under_load.json)")
    parser.add_argument("--worker", choices=ROWS, help=argparse.SUPPRESS)
    parser.add_argument("--onnx", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=BATCH, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.repeats <= 1000:
        parser.error("--repeats must be in 1..1000")
    if args.worker:
        return _worker(args)

    sys.path.insert(0, str(ROOT))
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from harness.errors import HarnessError
    from harness.fileio import cache_dir, write_json_atomic
    from reports.results import environment

    console = Console()
    json_path = Path(args.json) if args.json else cache_dir() / "benchmarks" / "threads_under_load.json"
    cores = _cores()
    columns = list(dict.fromkeys(args.columns))
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="threads-under-load-") as tmp:
            onnx_path = _export(tmp) if "ort" in args.rows else ""
            for condition in args.conditions:
                with busy_neighbours(CONDITIONS[condition]):
                    for row in args.rows:
                        console.print(f"{condition}: {row} ...", highlight=False)
                        cells = _measure_row(row, columns, cores, args.repeats, onnx_path)
                        rows.append({"condition": condition, "row": row, "cells": cells})
    except KeyboardInterrupt:
        print("error: interrupted; the busy neighbours were stopped", file=sys.stderr)
        return 130
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code

    missed = []
    for r in rows:
        times = {c: v["seconds"] for c, v in r["cells"].items() if "seconds" in v}
        best = min(times.values()) if times else None
        for v in r["cells"].values():
            v["ratio_to_best"] = round(v["seconds"] / best, 3) if best and "seconds" in v else None
        default = r["cells"].get("default", {})
        r["default_within_target"] = default.get("ratio_to_best") is not None and default["ratio_to_best"] <= TARGET
        if "default" in r["cells"] and not r["default_within_target"]:
            missed.append(f"{r['condition']} {r['row']}")

    table = Table(title=f"reduced {MODEL}, {BATCH} images of {SIDE} px, {cores} usable cores: seconds per unit "
                        f"(median of {args.repeats} runs) and x the best of the row", box=box.SIMPLE_HEAD)
    headers = {"default": "default", "1": "1 thread", "all": f"{cores} threads", "all-passive": f"{cores} PASSIVE",
               "procs": f"{cores} procs"}
    for header in ("condition", "work", *(headers[c] for c in columns), "chose", f"<={TARGET}x"):
        table.add_column(header, no_wrap=True, justify="left" if header in ("condition", "work") else "right")
    for r in rows:
        cells = []
        for c in columns:
            v = r["cells"][c]
            cells.append(f"{v['seconds']:.3f} x{v['ratio_to_best']:.2f}" if "seconds" in v else "failed")
        default = r["cells"].get("default", {})
        chose = f"{default['threads']} thr." if "threads" in default else "-"
        verdict = "-" if "default" not in r["cells"] else "yes" if r["default_within_target"] else "NO"
        table.add_row(r["condition"], r["row"], *cells, chose, verdict)
    console.width = max(console.width, 132)  # one line per row, also in a log file
    console.print(table)
    for r in rows:
        for v in r["cells"].values():
            if "error" in v:
                console.print(f"[red]{r['condition']} {r['row']}: {v['error']}[/]", highlight=False)
    try:
        write_json_atomic(json_path, {"benchmark": "threads_under_load", "model": MODEL, "size": "reduced",
                                      "batch_size": BATCH, "image_size": SIDE, "usable_cores": cores,
                                      "repeats": args.repeats, "target_ratio": TARGET, "environment": environment(),
                                      "rows": rows})
    except OSError as e:
        print(f"error: cannot write {json_path}: {e.strerror or e}", file=sys.stderr)
        return 2
    console.print(f"wrote {json_path}")
    if missed:
        print(f"error: the default is more than {TARGET}x the best in: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
