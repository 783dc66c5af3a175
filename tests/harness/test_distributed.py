"""Commands sharded over torchrun (harness.distributed): the shard arithmetic, and real multi-process jobs.

The jobs are real: ``torchrun`` (or worker processes started here with the variables torchrun sets) on gloo over
localhost, running ``python -m harness``. Their results are compared with one process's, exactly (timings aside).
Workers started here, rather than by torchrun, let a test read each rank's output on its own and signal one rank.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from harness import distributed
from harness.distributed import PEER_FAILED, TIMEOUT_ENV, World
from harness.errors import HarnessError

GLOO = torch.distributed.is_available() and torch.distributed.is_gloo_available()
needs_gloo = pytest.mark.skipif(not GLOO, reason="torch.distributed with the gloo backend is not available in this "
                                                 "PyTorch build: no multi-process job can run")
MODEL = "fcn-resnet50"
JOB_TIMEOUT_S = 240  # one job of a few processes; every subprocess here has a timeout
# Bounds a rank's wait at a collective in these jobs: a hang fails the test instead of stalling it for 6 hours.
COLLECTIVE_TIMEOUT_S = "120"
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR",
                      "MASTER_PORT", "TORCHELASTIC_RUN_ID")


# ---------------------------------------------------------------- the shard arithmetic (one process)

@contextmanager
def _as_rank(place: World) -> Iterator[None]:
    """This process taking ``place`` in a job (without joining one): what shard() and batches() read."""
    saved = distributed._joined
    distributed._joined = place
    try:
        yield
    finally:
        distributed._joined = saved


@given(size=st.integers(1, 40), count=st.integers(0, 300))
def test_shards_cover_every_item_once_in_rank_order_and_differ_by_at_most_one(size: int, count: int) -> None:
    shards = [distributed.shard(count, World(rank, size)) for rank in range(size)]
    assert [i for s in shards for i in s] == list(range(count))  # every item once, in rank order
    assert all(s.step == 1 for s in shards)  # contiguous blocks
    lengths = [len(s) for s in shards]
    assert max(lengths) - min(lengths) <= 1
    if size > count:
        assert lengths.count(0) == size - count


@given(size=st.integers(1, 12), count=st.integers(0, 120), batch_size=st.integers(1, 20))
def test_the_ranks_batches_joined_are_one_process_batches(size: int, count: int, batch_size: int) -> None:
    alone = distributed.batches(count, batch_size)
    assert [i for _, s in alone for i in range(s.start, s.stop)] == list(range(count))
    assert all(0 < s.stop - s.start <= batch_size for _, s in alone)
    parts = []
    for rank in range(size):
        with _as_rank(World(rank, size)):
            parts.append(distributed.batches(count, batch_size))
    assert [b for part in parts for b in part] == alone  # the same global indices and slices, in rank order
    assert sum(distributed.items_in(part) for part in parts) == count


def test_inside_local_a_rank_works_alone_and_writes() -> None:
    with _as_rank(World(1, 3)):
        assert distributed.shard(7) == range(2, 4) and not distributed.writes_here()
        with distributed.local():
            assert distributed.world() == distributed.SINGLE and distributed.job() == World(1, 3)
            assert distributed.shard(7) == range(7) and distributed.writes_here()
            assert distributed.gather("x") == ["x"] and distributed.everywhere(True)
        assert not distributed.writes_here()


@pytest.mark.parametrize("environ", [
    {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}, {}, {"RANK": "2", "WORLD_SIZE": "3", "LOCAL_RANK": "1"},
])
def test_environment_world_reads_torchrun_variables(environ: dict[str, str]) -> None:
    place = distributed.environment_world(environ)
    assert (place.rank, place.size, place.local_rank) == (int(environ.get("RANK", 0)),
                                                          int(environ.get("WORLD_SIZE", 1)),
                                                          int(environ.get("LOCAL_RANK", 0)))


BAD_WORLDS = [
    {"WORLD_SIZE": "abc"}, {"WORLD_SIZE": "2.0", "RANK": "0"}, {"WORLD_SIZE": "", "RANK": "0"},
    {"WORLD_SIZE": "2", "RANK": "one"}, {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0x1"},
    {"WORLD_SIZE": "2", "RANK": "2"}, {"WORLD_SIZE": "2", "RANK": "5"}, {"RANK": "1"},
    {"WORLD_SIZE": "2", "RANK": "-1"}, {"WORLD_SIZE": "0"}, {"WORLD_SIZE": "-3", "RANK": "0"},
    {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "-1"},
]


@pytest.mark.parametrize("environ", BAD_WORLDS)
def test_environment_world_refuses_a_place_that_is_not_one_in_one_line(environ: dict[str, str]) -> None:
    with pytest.raises(HarnessError) as caught:
        distributed.environment_world(environ)
    message = str(caught.value)
    assert caught.value.exit_code == 2 and "\n" not in message and "torchrun" in message, message


@pytest.mark.parametrize("environ, says", [
    ({"RANK": "0", "WORLD_SIZE": "2"}, "MASTER_ADDR and MASTER_PORT"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}, "MASTER_PORT"),
    *[({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1", TIMEOUT_ENV: bad}, TIMEOUT_ENV)
      for bad in ("0", "-5", "abc", "nan", "")],
])
def test_start_refuses_an_incomplete_job_before_joining(environ: dict[str, str], says: str) -> None:
    with pytest.raises(HarnessError) as caught:
        distributed.start(environ)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value) and says in str(caught.value)
    assert distributed.job() == distributed.SINGLE and not torch.distributed.is_initialized()


@pytest.mark.parametrize("environ", [*BAD_WORLDS[:3], {"WORLD_SIZE": "2", "RANK": "0"}])
def test_the_cli_refuses_bad_torchrun_variables_in_one_line(run_cli, monkeypatch: pytest.MonkeyPatch,
                                                            environ: dict[str, str]) -> None:
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    code, out, err = run_cli(["models"])
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: "), err


def test_python_m_harness_with_a_bad_world_size_exits_2_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "harness", "models"], capture_output=True, text=True,
                            env=_environment(tmp_path, WORLD_SIZE="abc"), timeout=120)
    assert result.returncode == 2 and result.stdout == "", result
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and "WORLD_SIZE" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- jobs: helpers

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(cache: str | os.PathLike, **extra: str) -> dict[str, str]:
    """This process's environment for a job on ``cache``: one thread, the CPU only, a bounded wait at collectives,
    no torchrun variables of an outer job."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARIABLES}
    # CUDA_VISIBLE_DEVICES: a CPU job on gloo, as CI runs it, also on a machine with fewer GPUs than ranks.
    env.update(OMP_NUM_THREADS="1", HARNESS_CACHE=str(cache), CUDA_VISIBLE_DEVICES="",
               **{TIMEOUT_ENV: COLLECTIVE_TIMEOUT_S})
    env.pop("HARNESS_TRACEBACK", None)
    env.update(extra)
    return env


def _torchrun(args: Sequence[str], nproc: int, cwd: Path, cache: str | os.PathLike,
              poll: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    """``torchrun --nproc-per-node NPROC -m harness ARGS`` in ``cwd``; ``poll()`` is called about every 20 ms while
    it runs (a watcher of the files it writes)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "harness", *args]
    with subprocess.Popen(command, cwd=cwd, env=_environment(cache), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as job:
        outputs: dict[str, str] = {}
        readers = [threading.Thread(target=lambda name, stream: outputs.__setitem__(name, stream.read()),
                                    args=(name, stream)) for name, stream in (("out", job.stdout), ("err", job.stderr))]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + JOB_TIMEOUT_S
        try:
            while job.poll() is None:
                if time.monotonic() > deadline:
                    raise AssertionError(f"torchrun ran longer than {JOB_TIMEOUT_S} s: {command}")
                if poll is not None:
                    poll()
                time.sleep(0.02)
        finally:
            _end_job(job)
            for reader in readers:
                reader.join(30)
    return subprocess.CompletedProcess(command, job.returncode, outputs.get("out", ""), outputs.get("err", ""))


def _end_job(job: subprocess.Popen) -> None:
    """Kill torchrun ``job`` (started in its own session) and its workers, if it still runs."""
    if job.poll() is None:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)


@dataclass
class _Rank:
    process: subprocess.Popen
    stdout: Path
    stderr: Path

    def output(self) -> tuple[str, str]:
        return self.stdout.read_text(errors="replace"), self.stderr.read_text(errors="replace")


@contextmanager
def _workers(argvs: Sequence[Sequence[str]], cwd: Path, cache: str | os.PathLike) -> Iterator[list[_Rank]]:
    """One ``python -m harness`` per argv, rank i of len(argvs), with the variables torchrun would set; each
    rank's stdout and stderr in its own file. Every worker still running on exit is killed."""
    port = str(_free_port())
    ranks = []
    try:
        for rank, argv in enumerate(argvs):
            env = _environment(cache, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(len(argvs)),
                               LOCAL_WORLD_SIZE=str(len(argvs)), MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
            out, err = cwd / f"rank{rank}.out", cwd / f"rank{rank}.err"
            with out.open("w") as out_file, err.open("w") as err_file:
                process = subprocess.Popen([sys.executable, "-m", "harness", *argv], cwd=cwd, env=env,
                                           stdout=out_file, stderr=err_file)
            ranks.append(_Rank(process, out, err))
        yield ranks
    finally:
        for rank in ranks:
            if rank.process.poll() is None:
                rank.process.kill()
            rank.process.wait(30)


def _wait_all(ranks: Sequence[_Rank], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    codes = []
    for rank in ranks:
        try:
            codes.append(rank.process.wait(max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"a rank still runs {timeout_s} s later: {[r.output() for r in ranks]}") from None
    return codes


def _saved_state(cache: str | os.PathLike, seed: int, since_ns: int) -> Path | None:
    """A Square Attack state file under ``cache``/square of a run with ``seed``, written since ``since_ns``."""
    for path in Path(cache, "square").glob("*.npz"):
        try:
            if path.stat().st_mtime_ns < since_ns:
                continue
            with np.load(path) as z:
                if json.loads(str(z["header"]))["config"]["seed"] == seed:
                    return path
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            continue  # replaced while it was read, or another test's damaged file
    return None


def _wait_for_state(ranks: Sequence[_Rank], cache: str | os.PathLike, seed: int, since_ns: int) -> Path:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = _saved_state(cache, seed, since_ns)
        if found is not None:
            return found
        if any(rank.process.poll() is not None for rank in ranks):
            raise AssertionError(f"a rank ended before the attack saved its state: {[r.output() for r in ranks]}")
        time.sleep(0.05)
    raise AssertionError(f"no state of seed {seed} was saved within 120 s")


def _without_timings(obj: Any, drop: frozenset[str] = frozenset()) -> Any:
    """``obj`` without its wall times (every key naming seconds, queries_per_second) and the keys in ``drop``."""
    if isinstance(obj, dict):
        return {k: _without_timings(v, drop) for k, v in obj.items()
                if "seconds" not in k and k != "queries_per_second" and k not in drop}
    if isinstance(obj, list):
        return [_without_timings(v, drop) for v in obj]
    return obj


def _records(path: Path, drop: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    records = json.loads(path.read_text())["results"]
    assert records, path
    return _without_timings(records, drop)


def _assert_same_results(run_cli, single: Path, job: Path, drop: frozenset[str] = frozenset()) -> None:
    """Records equal one process's (timings aside), and ``check --tolerance 0`` passes."""
    assert _records(job, drop) == _records(single, drop)
    code, out, err = run_cli(["check", "--baseline", str(single), "--results", str(job), "--tolerance", "0"])
    assert code == 0, out + err


def _problems_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:") or "Traceback" in line]


def _files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- jobs: equal to one process, rank 0 writes

# --device cpu: the single process (this one) computes on the CPU, as the jobs' ranks do.
WHITEBOX = ["whitebox", "--models", MODEL, "--columns", "fgsm,pgd-3,sea-2", "--n-images", "5", "--batch-size", "2",
            "--device", "cpu"]
# n-images 3 on 2 ranks: the lockstep slices of each iteration's candidates are of 2 and 1 images.
SQUARE = ["blackbox", "--model", MODEL, "--loss", "mce", "--queries", "12", "--n-images", "3", "--seed", "15003",
          "--curve", "curve.json"]
HARDLABEL = ["blackbox", "--model", MODEL, "--attack", "hardlabel", "--queries", "12", "--n-images", "3",
             "--seed", "15004", "--curve", "curve.json"]
EVAL_ORT = ["eval", "--model", MODEL, "--engine", "ort", "--n-images", "5", "--batch-size", "2"]
SAVE_ADV = ["attack", "--model", MODEL, "--attack", "pgd-2", "--n-images", "5", "--batch-size", "2",
            "--save-adv", "adv", "--device", "cpu"]


def _with(args: list[str], **options: str) -> list[str]:
    """``args`` with the values of ``--NAME`` options replaced (``n_images="2"``: ``--n-images 2``)."""
    args = list(args)
    for name, value in options.items():
        args[args.index(f"--{name.replace('_', '-')}") + 1] = value
    return args


JOBS = {
    "whitebox": (WHITEBOX, 2),
    "square-mce": (SQUARE, 2),
    "hardlabel": (HARDLABEL, 2),
    "eval-ort": (EVAL_ORT, 2),
    "attack-save-adv": (SAVE_ADV, 2),
    # More ranks than images (lockstep: one rank asks about no image) and than batches (one rank attacks none).
    "square-3-ranks-2-images": (_with(SQUARE, n_images="2"), 3),
    "attack-3-ranks-2-batches": (_with(SAVE_ADV, n_images="2", batch_size="1"), 3),
}


def _assert_same_adversarial(single: Path, job: Path) -> None:
    """The .npz files of --save-adv: the same names, arrays equal bit for bit, provenance equal but its date."""
    assert sorted(p.name for p in job.iterdir()) == sorted(p.name for p in single.iterdir()) != []
    for path in single.iterdir():
        with np.load(path) as a, np.load(job / path.name) as b:
            assert a.files == b.files
            for name in a.files:
                if name == "provenance":
                    pa, pb = (json.loads(str(z[name])) for z in (a, b))
                    assert {**pa, "created": None} == {**pb, "created": None}
                else:
                    assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape
                    assert a[name].tobytes() == b[name].tobytes(), name


@needs_gloo
@pytest.mark.slow
@pytest.mark.parametrize("name", list(JOBS))
def test_a_torchrun_job_equals_one_process_and_rank_0_alone_writes_and_prints(
        name: str, run_cli, trained_model, session_cache: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, nproc = JOBS[name]
    trained_model(MODEL)  # the commands load the cached checkpoint
    single, job = tmp_path / "single", tmp_path / "job"
    single.mkdir()
    job.mkdir()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the job's thread count: the same float sums
    monkeypatch.chdir(single)
    code, single_out, err = run_cli([*args, "--json", "results.json"])
    assert code == 0, err
    monkeypatch.chdir(tmp_path)
    result = _torchrun([*args, "--json", "results.json"], nproc, job, session_cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not _problems_in(result.stderr) and "Traceback" not in result.stdout, result.stderr

    _assert_same_results(run_cli, single / "results.json", job / "results.json")
    if "--curve" in args:
        assert _without_timings(json.loads((job / "curve.json").read_text())) == \
            _without_timings(json.loads((single / "curve.json").read_text()))
    if "--save-adv" in args:
        _assert_same_adversarial(single / "adv", job / "adv")

    # Rank 0 alone writes: each output once, and no temporary file (.NAME.*.tmp) of another rank left beside it.
    assert _files_under(job) == _files_under(single) != set()
    assert not [p for p in job.rglob(".*")], list(job.rglob(".*"))
    # ... and alone prints: the tables once, not once per rank.
    tables = single_out.count("┏")
    assert tables > 0 and result.stdout.count("┏") == tables, result.stdout
    assert result.stdout.count("wrote results.json") == 1, result.stdout
    # A notice (not an error) is printed once too: rank 0's; the other ranks' would repeat it N times.
    notices = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(notices) == len(set(notices)), result.stderr


# ---------------------------------------------------------------- jobs: a rank that fails or is killed

LONG_SQUARE = ["blackbox", "--model", MODEL, "--queries", "100000", "--n-images", "2", "--seed", "15005"]


@needs_gloo
@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0])
def test_a_killed_rank_stops_the_other_with_one_line_and_a_nonzero_exit(
        victim: int, trained_model, session_cache: str, tmp_path: Path) -> None:
    trained_model(MODEL)
    started = time.time_ns()
    with _workers([LONG_SQUARE, LONG_SQUARE], tmp_path, session_cache) as ranks:
        _wait_for_state(ranks, session_cache, 15005, started)  # both ranks are in the attack's lockstep loop
        time.sleep(0.3)
        ranks[victim].process.send_signal(signal.SIGKILL)
        codes = _wait_all(ranks, timeout_s=60)
        survivor = ranks[1 - victim]
        out, err = survivor.output()
    assert codes[victim] == -signal.SIGKILL
    assert codes[1 - victim] == 1, (codes, err)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: rank {1 - victim}: {PEER_FAILED}"), err
    assert "Traceback" not in err + out, err + out


@needs_gloo
@pytest.mark.slow
def test_a_killed_worker_of_torchrun_stops_the_job_with_a_nonzero_exit(trained_model, session_cache: str,
                                                                       tmp_path: Path) -> None:
    trained_model(MODEL)
    logs = tmp_path / "logs"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(_free_port()), "--log-dir", str(logs), "--redirects", "3", "-m", "harness",
               *LONG_SQUARE[:-1], "15006"]
    started = time.time_ns()
    with subprocess.Popen(command, cwd=tmp_path, env=_environment(session_cache), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True) as job:
        try:
            deadline = time.monotonic() + 120
            while _saved_state(session_cache, 15006, started) is None:
                assert job.poll() is None and time.monotonic() < deadline, "the job ended before its attack began"
                time.sleep(0.05)
            workers = _workers_of(job.pid)
            assert sorted(workers) == [0, 1], workers
            os.kill(workers[1], signal.SIGKILL)
            code = job.wait(90)
        finally:
            _end_job(job)
    assert code != 0
    # torchrun keeps each worker's output under LOG_DIR/<run id>/attempt_0/<local rank>/; the survivor is rank 0.
    survivor = list(logs.glob("*/attempt_0/0/stderr.log"))
    assert len(survivor) == 1, list(logs.rglob("*"))
    err = survivor[0].read_text(errors="replace")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: rank 0: {PEER_FAILED}"), err
    assert "Traceback" not in err, err


def _workers_of(pid: int) -> dict[int, int]:
    """The worker processes torchrun ``pid`` started, by rank (each one's RANK variable)."""
    workers = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            rank = [v[len(b"RANK="):] for v in environ if v.startswith(b"RANK=")]
            if rank:
                workers[int(rank[0])] = int(child)
    return workers


@needs_gloo
@pytest.mark.slow
def test_an_input_error_on_one_rank_stops_every_rank_with_one_line_each(trained_model, session_cache: str,
                                                                        tmp_path: Path) -> None:
    trained_model(MODEL)
    missing = tmp_path / "only-on-rank-0.safetensors"  # a file one node lacks
    good = ["eval", "--model", MODEL, "--engine", "ort", "--n-images", "4", "--batch-size", "1"]
    with _workers([good, [*good, "--checkpoint", str(missing)]], tmp_path, session_cache) as ranks:
        codes = _wait_all(ranks, timeout_s=120)
        outputs = [rank.output() for rank in ranks]
    assert codes[1] == 2 and codes[0] != 0, (codes, outputs)
    for rank, (out, err) in enumerate(outputs):
        assert err.count("\n") == 1 and err.startswith(f"error: rank {rank}: "), (rank, err)
        assert "Traceback" not in out + err
    assert str(missing) in outputs[1][1] and "does not exist" in outputs[1][1]
    assert PEER_FAILED in outputs[0][1]


@needs_gloo
@pytest.mark.slow
def test_an_input_error_on_every_rank_is_one_line_on_each(trained_model, session_cache: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.safetensors"
    argv = ["eval", "--model", MODEL, "--n-images", "2", "--checkpoint", str(missing)]
    with _workers([argv, argv], tmp_path, session_cache) as ranks:
        codes = _wait_all(ranks, timeout_s=120)
        outputs = [rank.output() for rank in ranks]
    assert codes == [2, 2], outputs
    for rank, (out, err) in enumerate(outputs):
        assert err.count("\n") == 1 and err.startswith(f"error: rank {rank}: checkpoint {missing} does not exist")
        assert out == ""


@needs_gloo
@pytest.mark.slow
def test_ranks_that_run_on_different_images_are_refused_not_summed(trained_model, session_cache: str,
                                                                   tmp_path: Path) -> None:
    """The ranks of a job must run the same command on the same data (e.g. a node whose data folder or cached
    checkpoint differs): a silent sum over different images would be a wrong number."""
    trained_model(MODEL)
    argv = ["eval", "--model", MODEL, "--engine", "ort", "--batch-size", "1", "--json", "results.json"]
    with _workers([[*argv, "--n-images", "4"], [*argv, "--n-images", "6"]], tmp_path, session_cache) as ranks:
        codes = _wait_all(ranks, timeout_s=120)
        outputs = [rank.output() for rank in ranks]
    assert codes == [2, 2], outputs
    for rank, (_, err) in enumerate(outputs):
        assert err.count("\n") == 1 and err.startswith(f"error: rank {rank}: ") and "disagree" in err, err
    assert not (tmp_path / "results.json").exists()


# ---------------------------------------------------------------- jobs: Square Attack resumed under torchrun

RESUMED = ["blackbox", "--model", MODEL, "--queries", "400", "--n-images", "2", "--seed", "15007",
           "--curve", "curve.json", "--json", "results.json"]


@needs_gloo
@pytest.mark.slow
def test_an_interrupted_square_job_resumes_to_the_uninterrupted_result(
        run_cli, trained_model, session_cache: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trained_model(MODEL)
    single, job = tmp_path / "single", tmp_path / "job"
    single.mkdir()
    job.mkdir()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(single)
    code, _, err = run_cli(RESUMED)
    assert code == 0, err
    monkeypatch.chdir(tmp_path)

    started = time.time_ns()
    with _workers([RESUMED, RESUMED], job, session_cache) as ranks:
        state = _wait_for_state(ranks, session_cache, 15007, started)
        time.sleep(0.2)
        for rank in ranks:  # Ctrl-C in the terminal reaches every worker
            rank.process.send_signal(signal.SIGINT)
        codes = _wait_all(ranks, timeout_s=60)
        outputs = [rank.output() for rank in ranks]
    assert codes == [130, 130], outputs
    for out, err in outputs:
        assert not _problems_in(err) and "Traceback" not in out, (out, err)
    with np.load(state) as z:
        spent = int(z["queries"].max())
    assert 1 <= spent < 400, spent  # stopped mid-run: the resumed job has work left
    assert not (job / "results.json").exists()

    result = _torchrun([*RESUMED, "--resume"], 2, job, session_cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not _problems_in(result.stderr) and "starting afresh" not in result.stderr, result.stderr
    _assert_same_results(run_cli, single / "results.json", job / "results.json")
    assert _without_timings(json.loads((job / "curve.json").read_text())) == \
        _without_timings(json.loads((single / "curve.json").read_text()))

    # A damaged state is read by rank 0 alone; its refusal reaches every rank: one line each, nothing overwritten.
    damaged = state.read_bytes()[:300]
    state.write_bytes(damaged)
    with _workers([[*RESUMED, "--resume"]] * 2, job, session_cache) as ranks:
        codes = _wait_all(ranks, timeout_s=120)
        refused = [rank.output() for rank in ranks]
    assert codes == [2, 2], refused
    for rank, (_, err) in enumerate(refused):
        assert err.count("\n") == 1 and err.startswith(f"error: rank {rank}: ") and str(state) in err, err
    assert state.read_bytes() == damaged

    # Rank 0 alone says that the job stopped and how to continue it; the other ranks' notices would repeat it.
    assert outputs[1][1] == "", outputs[1][1]


# ---------------------------------------------------------------- jobs: a missing model is built once

TINY_SUITE = """\
name = "tiny"
batch_size = 2
threads = 1

[data]
source = "synthetic"
image_size = 32
seed = 0

[models]
names = ["fcn-resnet50"]
size = "reduced"
epochs = 1
n_train = 50
seed = 0

[whitebox]
columns = ["fgsm", "pgd-2"]
n_images = 3
eps = 8
seed = 0
"""


class _FirstVersions:
    """The (inode, mtime) each file under ``root`` had when first seen: a file written twice changes them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seen: dict[Path, tuple[int, int]] = {}

    def __call__(self) -> None:
        for path in self.root.rglob("*"):
            try:
                info = path.stat()
            except OSError:
                continue  # a temporary file renamed meanwhile
            if path.is_file() and not path.name.startswith("."):
                self.seen.setdefault(path, (info.st_ino, info.st_mtime_ns))

    def rewritten(self) -> list[Path]:
        return [p for p, first in self.seen.items() if (p.stat().st_ino, p.stat().st_mtime_ns) != first]


@needs_gloo
@pytest.mark.slow
def test_a_job_on_an_empty_cache_trains_the_model_once_and_equals_one_process(run_cli, tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_SUITE)
    single_cache, job_cache = tmp_path / "cache-single", tmp_path / "cache-job"
    # A process of its own, like the job's ranks: the suite trains on the device it finds (CUDA hidden here).
    alone = subprocess.run([sys.executable, "-m", "harness", "suite", "--config", str(config), "--out",
                            str(tmp_path / "single")], cwd=tmp_path, env=_environment(single_cache),
                           capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert alone.returncode == 0, alone.stdout + alone.stderr

    watch = _FirstVersions(job_cache)
    result = _torchrun(["suite", "--config", str(config), "--out", str(tmp_path / "job")], 2, tmp_path, job_cache,
                       poll=watch)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not _problems_in(result.stderr), result.stderr
    watch()

    checkpoints = list((job_cache / "checkpoints").glob("*.safetensors"))
    assert len(checkpoints) == 1, checkpoints
    assert checkpoints[0] in watch.seen and not watch.rewritten(), watch.rewritten()  # written once, by one rank
    assert (job_cache / "checkpoints" / f".{checkpoints[0].name}.lock").is_file()  # built behind its lock
    assert not list(job_cache.rglob("*.tmp")), list(job_cache.rglob("*.tmp"))
    assert {p.relative_to(job_cache).parts[0] for p in watch.seen} >= {"checkpoints", "data"}

    from safetensors import safe_open

    reference = next((single_cache / "checkpoints").glob("*.safetensors"))
    assert reference.name == checkpoints[0].name
    with safe_open(str(reference), "pt") as a, safe_open(str(checkpoints[0]), "pt") as b:
        assert sorted(a.keys()) == sorted(b.keys())
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())
    # The checkpoint's own date makes its sha256 differ; everything else is equal.
    _assert_same_results(run_cli, tmp_path / "single" / "results.json", tmp_path / "job" / "results.json",
                         drop=frozenset({"weights_sha256"}))
