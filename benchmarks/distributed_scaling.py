"""Wall time of a command run as one process and as a torchrun job of N ranks, with identical results.

Rows: ``whitebox`` (PGD-20 on the reduced fcn-resnet50, 16 images in batches of 8: a rank's unit of work is one of
the single process's batches) and ``blackbox`` (the Square Attack through ONNX Runtime, 500 queries per image, 16
images: every rank holds the run and queries the engine about its slice of each iteration's candidates), on the
built-in scenes at ``--image-size`` (default: 384 px for whitebox, 256 px for blackbox, so that each row's work is
tens of seconds and the ratio is not the noise of a few). Each rank has one thread (OMP_NUM_THREADS=1), as has the
single process. Per world size, two times (medians of ``--repeats`` runs of the whole command, measured side by
side in one run of the benchmark so that a change in the machine's load touches every column alike):

* ``wall``: the command from start to exit: python, torch, the model, the process group and the work;
* ``work``: ``wall`` less the fixed cost, the wall time of the same command on 1 image with 1 step or 1 query in
  the same world size (start-up, loading and the process group, which do not shrink with more ranks).

"same" says whether the job's records equal the single process's exactly (``check --tolerance 0`` and every field
except timings). Target: a speed-up of the work of at least 1.7x on 2 ranks on a quiet 2-core machine (exit 1 when
missed, or when a result differs); the wall speed-up is reported beside it. The model is trained briefly into a
temporary cache first (weights hardly change the timing, but the Square Attack stops early on images it has fooled
completely, so it must be a real model).

    .venv/bin/python benchmarks/distributed_scaling.py [--ranks 1 2] [--repeats 3] [--rows whitebox blackbox]
        [--image-size PX] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.7
MODEL = "fcn-resnet50"
N_IMAGES = 16
ROW_IMAGE_SIZES = {"whitebox": 384, "blackbox": 256}
# Per row: the work and its fixed-cost twin (1 image, 1 step or query).
ROWS = {
    "whitebox": (["whitebox", "--models", MODEL, "--columns", "pgd-20", "--n-images", str(N_IMAGES),
                  "--batch-size", "8"], ["whitebox", "--models", MODEL, "--columns", "pgd-1", "--n-images", "1"]),
    "blackbox": (["blackbox", "--model", MODEL, "--engine", "ort", "--queries", "500", "--n-images", str(N_IMAGES)],
                 ["blackbox", "--model", MODEL, "--engine", "ort", "--queries", "1", "--n-images", "1"]),
}
TIMING_FIELDS = ("seconds", "queries_per_second")
COMMAND_TIMEOUT_S = 1800


def _python() -> str:
    return str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").is_file() else sys.executable


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HARNESS_CACHE": str(cache), "PYTHONPATH": str(ROOT)}


def _run(argv: list[str], ranks: int, cache: Path, out: Path) -> float:
    """Seconds of one run of ``python -m harness ARGV --json OUT``, alone (ranks 1) or under torchrun."""
    launcher = [_python(), "-m", "harness"] if ranks == 1 else \
        [_python(), "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", "-m", "harness"]
    start = time.perf_counter()
    done = subprocess.run([*launcher, *argv, "--json", str(out)], env=_env(cache), cwd=ROOT, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT_S)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [done.stdout[-300:]]
        raise SystemExit(f"error: {' '.join(argv)} on {ranks} rank(s) failed ({done.returncode}): {lines[-1]}")
    return seconds


def _records(path: Path) -> list[dict[str, Any]]:
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if not any(t in k for t in TIMING_FIELDS)}
        return [strip(v) for v in value] if isinstance(value, list) else value

    return strip(json.loads(path.read_text())["results"])


def _same(single: Path, job: Path, cache: Path) -> bool:
    gate = subprocess.run([_python(), "-m", "harness", "check", "--baseline", str(single), "--results", str(job),
                           "--tolerance", "0"], env=_env(cache), cwd=ROOT, capture_output=True, timeout=300)
    return gate.returncode == 0 and _records(single) == _records(job)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=list(ROWS))
    parser.add_argument("--image-size", type=int, help="side of the built-in scenes for every row (default: "
                        + ", ".join(f"{row} {px}" for row, px in ROW_IMAGE_SIZES.items()) + ")")
    parser.add_argument("--json", help="write the table as JSON to this file")
    args = parser.parse_args()
    ranks = sorted(set([1, *args.ranks]))
    work = Path(tempfile.mkdtemp(prefix="harness-distributed-"))
    try:
        cache = work / "cache"
        sizes = {row: args.image_size or ROW_IMAGE_SIZES[row] for row in args.rows}
        for px in sorted(set(sizes.values())):
            print(f"training {MODEL} (reduced, 1 epoch on 200 scenes of {px} px) into a temporary cache", flush=True)
            trained = subprocess.run([_python(), "-m", "harness", "train", "--model", MODEL, "--epochs", "1",
                                      "--n-train", "200", "--image-size", str(px)], env=_env(cache), cwd=ROOT,
                                     capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
            if trained.returncode != 0:
                lines = trained.stderr.strip().splitlines() or ["(no message)"]
                print(f"error: training at {px} px failed: {lines[-1]}", file=sys.stderr)
                return 2
        rows = []
        for row in args.rows:
            command, fixed_command = ([*argv, "--image-size", str(sizes[row])] for argv in ROWS[row])
            wall: dict[int, list[float]] = {n: [] for n in ranks}
            fixed: dict[int, list[float]] = {n: [] for n in ranks}
            for repeat in range(args.repeats):  # the columns alternate within each repeat
                for n in ranks:
                    wall[n].append(_run(command, n, cache, work / f"{row}-{n}-{repeat}.json"))
                    fixed[n].append(_run(fixed_command, n, cache, work / f"{row}-{n}-fixed.json"))
            wall_s = {n: statistics.median(s) for n, s in wall.items()}
            fixed_s = {n: statistics.median(s) for n, s in fixed.items()}
            work_s = {n: max(wall_s[n] - fixed_s[n], 1e-9) for n in ranks}
            same = [_same(work / f"{row}-1-0.json", work / f"{row}-{n}-{r}.json", cache)
                    for n in ranks if n > 1 for r in range(args.repeats)]
            rows.append({"row": row, "image_size": sizes[row], "command": " ".join(command), "wall_s": wall_s,
                         "fixed_s": fixed_s,
                         "work_s": work_s, "wall_runs": wall, "fixed_runs": fixed,
                         "work_speedup": {n: work_s[1] / work_s[n] for n in ranks},
                         "wall_speedup": {n: wall_s[1] / wall_s[n] for n in ranks}, "same": all(same)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _print(rows, ranks)
    ok = all(r["same"] and (2 not in r["work_speedup"] or r["work_speedup"][2] >= TARGET) for r in rows)
    print(f"target: work >= {TARGET}x on 2 ranks with identical results: {'met' if ok else 'MISSED'}")
    if args.json:
        doc = {"benchmark": "distributed_scaling", "target_work_speedup_2_ranks": TARGET, "cores": os.cpu_count(),
               "repeats": args.repeats, "rows": [_keys_as_text(r) for r in rows]}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if ok else 1


def _keys_as_text(value: Any) -> Any:
    """JSON objects have string keys: the world sizes become "1", "2"."""
    if isinstance(value, dict):
        return {str(k): _keys_as_text(v) for k, v in value.items()}
    return value


def _print(rows: list[dict[str, Any]], ranks: list[int]) -> None:
    cells = [("wall s", "wall_s"), ("fixed s", "fixed_s"), ("work s", "work_s")]
    header = f"{'row':9}" + "".join(f"{f'{label} ({n})':>14}" for n in ranks for label, _ in cells)
    header += "".join(f"{f'work x{n}':>10}{f'wall x{n}':>10}" for n in ranks if n > 1) + "  same"
    print(header)
    for r in rows:
        line = f"{r['row']:9}" + "".join(f"{r[key][n]:14.1f}" for n in ranks for _, key in cells)
        line += "".join(f"{r['work_speedup'][n]:10.2f}{r['wall_speedup'][n]:10.2f}" for n in ranks if n > 1)
        print(line + f"  {'yes' if r['same'] else 'NO'}")


if __name__ == "__main__":
    sys.exit(main())
