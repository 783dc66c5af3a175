"""How many CPU threads PyTorch and ONNX Runtime use: one decision per command, made here.

The first rule that applies decides:

1. an explicit request: the suite's ``threads`` setting, a ``--threads N`` option, a caller's argument;
2. ``OMP_NUM_THREADS``, when it is set (OpenMP's list form ``"4,2"`` counts its first number);
3. the load-aware default: the cores this process may use (its CPU affinity, capped by a cgroup CPU
   quota) that are idle over a short window of ``/proc/stat``; at least 1.

Why load-aware: intra-op threads meet at a barrier after every parallel operation, so one thread that
a busy neighbour keeps off its core stalls all of them. With one busy process on a 2-core machine a
2-thread training step took 13-28x as long as a 1-thread one, while on a quiet machine 2 threads are
the faster choice. Counting the idle cores when a command starts keeps the quiet speed-up and avoids
the collapse (``benchmarks/threads_under_load.py`` measures both).

The count is chosen once, when a command starts, and recorded in its results (``environment.threads``):
a count that followed the load mid-run would make the run's numbers unrepeatable. ONNX Runtime sessions
take :func:`onnx_runtime_threads` when they open, unless given their own: the requested count, else every
usable core (their pool does not spin, so it does not collapse beside neighbours as OpenMP's does).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.limits import MAX_THREADS

IDLE_WINDOW_S = 0.1  # /proc/stat counts in 10 ms ticks: 10 ticks per core, enough to tell busy from idle
# A core counts as free when at least 60 % of it was idle: a neighbour that takes a third of a core
# still leaves room for a thread, one that takes half of it does not.
FREE_CORE_IDLE = 0.6
PROC_STAT = Path("/proc/stat")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count chosen and why: ``source`` is ``requested``, ``OMP_NUM_THREADS`` or ``load-aware``."""

    threads: int
    source: str
    detail: str = ""


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota (rounded up); >= 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError, ZeroDivisionError):
        pass  # no (readable) cgroup v2 quota here: the affinity is the limit
    return max(1, cores)


def _cpu_times(allowed: set[int]) -> dict[int, tuple[int, int]]:
    """(idle, total) jiffies of each allowed CPU from /proc/stat; idle includes iowait."""
    times = {}
    for line in PROC_STAT.read_text().splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        cpu = int(name[3:])
        if cpu in allowed:
            values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal (guest is in user)
            times[cpu] = (values[3] + values[4], sum(values))
    return times


def idle_cores(window_s: float = IDLE_WINDOW_S) -> list[float]:
    """The idle fraction in [0, 1] of each CPU this process may run on, over ``window_s`` seconds.

    Reads /proc/stat twice (the caller sleeps in between, so its own threads do not count as load).
    Raises OSError where /proc/stat cannot be read (not Linux).
    """
    if not 0 < window_s <= 10:
        raise ValueError(f"window_s must be in (0, 10] seconds, got {window_s!r}")
    allowed = os.sched_getaffinity(0)
    before = _cpu_times(allowed)
    time.sleep(window_s)
    after = _cpu_times(allowed)
    fractions = []
    for cpu, (idle, total) in after.items():
        if cpu not in before:
            continue  # came online during the window
        d_idle, d_total = idle - before[cpu][0], total - before[cpu][1]
        fractions.append(1.0 if d_total <= 0 else min(1.0, max(0.0, d_idle / d_total)))
    return fractions


def load_aware_threads(window_s: float = IDLE_WINDOW_S) -> ThreadChoice:
    """The default: :func:`threads_for_idle` of the allowed CPUs' idle fractions over ``window_s``.
    Without /proc/stat (not Linux): every usable core."""
    cores = usable_cores()
    try:
        fractions = idle_cores(window_s)
    except (OSError, ValueError, AttributeError):  # AttributeError: no os.sched_getaffinity (not Linux)
        fractions = []
    if not fractions:  # nothing to go by: torch's own default, every usable core
        return ThreadChoice(cores, "load-aware", f"no load figures in {PROC_STAT}: all {cores} usable cores")
    return ThreadChoice(threads_for_idle(fractions, cores), "load-aware",
                        f"{sum(fractions):.1f} of {len(fractions)} cores idle")


def threads_for_idle(fractions: Sequence[float], cores: int) -> int:
    """Threads for CPUs idle by ``fractions`` (each in [0, 1]): the idle core-equivalents summed over the CPUs
    (the scheduler moves threads between cores), a part of a core counted when it is at least
    :data:`FREE_CORE_IDLE`; at most ``cores``, at least 1; non-decreasing in every fraction."""
    return _threads_for(sum(min(1.0, max(0.0, f)) for f in fractions), cores)


def _threads_for(idle: float, cores: int) -> int:
    return max(1, min(cores, math.floor(idle + 1 - FREE_CORE_IDLE + 1e-9)))


def env_threads(environ: Mapping[str, str] | None = None) -> int | None:
    """The thread count OMP_NUM_THREADS asks for, None when it is unset or empty.

    Raises HarnessError (one line) when it is set to anything but a positive integer (or a list of them).
    """
    text = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "").strip()
    if not text:
        return None
    counts = [part.strip() for part in text.split(",")]  # OpenMP's nested form: every level a count, or it warns
    if not all(c.isascii() and c.isdigit() and 1 <= int(c) <= MAX_THREADS for c in counts):
        raise HarnessError(f"OMP_NUM_THREADS={text[:40]!r} is not a positive thread count; set it to a number "
                           "such as 1, or unset it for the load-aware default")
    return int(counts[0])


def choose_threads(requested: int | None = None, window_s: float = IDLE_WINDOW_S) -> ThreadChoice:
    """The thread count by the module's rules: ``requested``, then OMP_NUM_THREADS, then load-aware."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise HarnessError(f"threads must be an integer >= 1, got {requested!r}")
        return ThreadChoice(requested, "requested")
    from_env = env_threads()
    if from_env is not None:
        return ThreadChoice(from_env, "OMP_NUM_THREADS")
    return load_aware_threads(window_s)


_APPLIED: list[ThreadChoice] = []  # what set_threads applied last (at most one entry), for onnx_runtime_threads


def onnx_runtime_threads() -> int:
    """ONNX Runtime's intra-op threads: the count :func:`set_threads` applied when it came from a request or
    OMP_NUM_THREADS; otherwise (load-aware, or set_threads never called) every usable core.

    Why not torch's load-aware count: ORT's pool runs with spinning off, so a thread that a neighbour delays
    costs only its own share of the work, not a stall of every thread at a barrier. Measured beside 0, 1 and 2
    busy neighbours (benchmarks/threads_under_load.py), all cores was the best or within 1.06x of it, and one
    thread up to 1.35x slower.
    """
    if _APPLIED and _APPLIED[0].source != "load-aware":
        return _APPLIED[0].threads
    return usable_cores()


def set_threads(requested: int | None = None) -> ThreadChoice:
    """Apply :func:`choose_threads` to PyTorch's intra-op pool (process-wide; ONNX Runtime follows it).

    The choice holds for the whole command: a run's float sums, hence its numbers, depend on its thread
    count, so a count that changed with the neighbours' load mid-run would make a run unrepeatable.
    """
    import torch

    choice = choose_threads(requested)
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    _APPLIED[:] = [choice]
    return choice
