"""The thread policy (harness.threads): --threads, then OMP_NUM_THREADS, then the idle cores from /proc/stat."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import onnx
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper

from engines.ort_engine import OrtEngine
from exporters.onnx_file import write_metadata
from harness import threads
from harness.errors import HarnessError
from harness.threads import (
    FREE_CORE_IDLE,
    choose_threads,
    env_threads,
    idle_cores,
    load_aware_threads,
    set_threads,
    threads_for_idle,
    usable_cores,
)

ROOT = Path(__file__).resolve().parents[2]
BUSY_LOOP = "import os, sys\nparent = int(sys.argv[1])\nwhile os.getppid() == parent:\n    sum(range(100_000))\n"



@contextmanager
def _busy_everywhere():
    """A busy-loop process on every usable core for the block (they also stop when the test process dies)."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(os.getpid())]) for _ in range(usable_cores())]
    try:
        time.sleep(0.3)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()

@pytest.fixture
def torch_threads():
    """Restores torch's thread count after a test that changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("value", "threads"), [("1", 1), ("3", 3), (" 2 ", 2), ("4,2", 4), ("2,1,1", 2)])
def test_omp_num_threads_decides_when_nothing_is_requested(monkeypatch, value, threads):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert choose_threads().threads == threads
    assert choose_threads().source == "OMP_NUM_THREADS"


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_omp_num_threads_is_unset(monkeypatch, value):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert env_threads() is None
    assert choose_threads().source == "load-aware"


# OpenMP's nested list form is checked at every level ("1,abc": libgomp would print its own warning).
@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "2x", ",2", "99999", "1e3", "\u0663", "1,abc", "2,",
                                   "2,0", "1,,1"])
def test_a_bad_omp_num_threads_is_a_one_line_error(monkeypatch, value):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    with pytest.raises(HarnessError, match="OMP_NUM_THREADS") as info:
        choose_threads()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("env", [None, "1", "4", "abc"])
@pytest.mark.parametrize("requested", [1, 2, 7])
def test_a_request_wins_over_the_environment(monkeypatch, env, requested):
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert choose_threads(requested).threads == requested
    assert choose_threads(requested).source == "requested"


@pytest.mark.parametrize("requested", [0, -1, True, 1.5, "2"])
def test_a_bad_request_is_a_one_line_error(requested):
    with pytest.raises(HarnessError, match="threads must be an integer"):
        choose_threads(requested)


def test_set_threads_applies_the_choice_to_torch(monkeypatch, torch_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert set_threads().threads == 1 and torch.get_num_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    choice = set_threads()
    assert choice.source == "load-aware" and torch.get_num_threads() == choice.threads
    assert set_threads(2).threads == 2 and torch.get_num_threads() == 2


def test_idle_cores_reads_one_fraction_per_usable_cpu():
    fractions = idle_cores(0.05)
    assert len(fractions) == len(os.sched_getaffinity(0))
    assert all(0.0 <= f <= 1.0 for f in fractions)


@pytest.mark.parametrize("window", [0, -1, float("nan"), float("inf"), 11])
def test_idle_cores_refuses_a_window_that_is_not_short_and_positive(window):
    with pytest.raises(ValueError, match="window_s"):
        idle_cores(window)


def test_the_load_aware_choice_stays_within_the_usable_cores():
    choice = load_aware_threads(0.05)
    assert 1 <= choice.threads <= usable_cores()
    assert choice.source == "load-aware" and "idle" in choice.detail


def test_busy_neighbours_on_every_core_leave_one_thread():
    with _busy_everywhere():
        choice = load_aware_threads(0.3)
    assert choice.threads == 1, choice.detail


def test_a_process_pinned_to_one_cpu_gets_one_thread():
    # A child process, so the test session's own CPU affinity stays as it was.
    script = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
              "from harness.threads import idle_cores, load_aware_threads, usable_cores\n"
              "print(usable_cores(), len(idle_cores(0.05)), load_aware_threads(0.05).threads)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.split() == ["1", "1", "1"]


@given(st.lists(st.floats(0, 1), min_size=1, max_size=64), st.integers(1, 64))
def test_threads_for_idle_is_bounded_and_counts_free_cores(fractions, cores):
    threads = threads_for_idle(fractions, cores)
    assert 1 <= threads <= cores
    assert threads <= max(1, math.ceil(sum(fractions)))  # never more threads than idle core-equivalents
    assert threads >= min(cores, math.floor(sum(fractions)))  # every wholly idle core-equivalent is used
    assert threads_for_idle([1.0] * len(fractions), cores) == min(cores, len(fractions))


@given(st.integers(1, 32), st.floats(0, 1))
def test_a_partly_idle_core_counts_from_free_core_idle(whole, part):
    threads = threads_for_idle([1.0] * whole + [part], whole + 1)
    assert threads == whole + (1 if part >= FREE_CORE_IDLE else 0)


@given(st.lists(st.floats(0, 1), min_size=1, max_size=16), st.integers(0, 15), st.floats(0, 1), st.integers(1, 16))
def test_threads_for_idle_never_drops_when_a_core_gets_idler(fractions, index, more, cores):
    i = index % len(fractions)
    idler = [*fractions[:i], min(1.0, fractions[i] + more), *fractions[i + 1:]]
    assert threads_for_idle(idler, cores) >= threads_for_idle(fractions, cores)


@pytest.mark.parametrize(("fractions", "threads"), [([1.0, 1.0], 2), ([1.0, 0.0], 1), ([0.5, 0.5], 1),
                                                    ([0.0, 0.0], 1), ([0.7, 0.7], 1), ([1.0, 0.6], 2),
                                                    ([1.0, 0.5], 1), ([1.0] * 8, 8)])
def test_threads_for_idle_on_a_few_machines(fractions, threads):
    assert threads_for_idle(fractions, len(fractions)) == threads


def _tiny_onnx(path: Path) -> None:
    """A 1x1 convolution from 3 channels to 2 classes: the smallest graph with the harness's I/O contract."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 1, 1], [0.1] * 6)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2, "height", "width"])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    write_metadata(model, {"precision": "fp32"})  # a harness-style export: OrtEngine runs it without a card
    onnx.save(model, str(path))


@pytest.mark.parametrize(("env", "requested", "given", "expected"), [
    (None, None, None, "cores"),  # load-aware for torch; every usable core for ONNX Runtime's non-spinning pool
    ("1", None, None, 1), ("3", None, None, 3),  # OMP_NUM_THREADS governs both pools
    (None, 2, None, 2), ("1", 3, None, 3),  # so does a request (the suite's threads)
    ("1", None, 2, 2), (None, 1, 3, 3),  # an engine's own threads win
])
def test_onnx_runtime_threads_follow_a_request_else_use_every_usable_core(monkeypatch, tmp_path, torch_threads,
                                                                           env, requested, given, expected):
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    set_threads(requested)
    _tiny_onnx(tmp_path / "tiny.onnx")
    with OrtEngine(tmp_path / "tiny.onnx", threads=given) as engine:
        options = engine._session.get_session_options()
        assert options.intra_op_num_threads == (usable_cores() if expected == "cores" else expected)


def test_a_bad_omp_num_threads_stops_a_command_with_one_line(monkeypatch, run_cli):
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    code, out, err = run_cli(["eval", "--model", "fcn8s-vgg16", "--engine", "torch"])
    assert code == 2
    assert err.strip().count("\n") == 0 and "OMP_NUM_THREADS='lots'" in err



@pytest.mark.parametrize("content", [None, "", "cpu0 a b c\n", "cpu 1 2 3 4 5 6 7 8\n", "intr 1\n"])
def test_without_load_figures_the_default_is_every_usable_core(monkeypatch, tmp_path, content):
    stat = tmp_path / "stat"
    if content is not None:
        stat.write_text(content)
    monkeypatch.setattr(threads, "PROC_STAT", stat)
    choice = load_aware_threads(0.01)
    assert choice.threads == usable_cores() and "usable cores" in choice.detail


@pytest.mark.parametrize(("content", "limit"), [("max 100000", None), ("150000 100000", 2), ("50000 100000", 1),
                                                ("400000 100000", 4), ("0 0", None), ("garbage", None), ("", None)])
def test_a_cgroup_cpu_quota_caps_the_usable_cores(monkeypatch, tmp_path, content, limit):
    quota = tmp_path / "cpu.max"
    quota.write_text(content)
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", quota)
    affinity = len(os.sched_getaffinity(0))
    assert usable_cores() == (affinity if limit is None else min(affinity, limit))
