"""Running one command as several processes under ``torchrun``: the ranks, the shards, the collectives.

``torchrun --nproc-per-node N -m harness COMMAND ...`` starts N copies of the command. Each reads its
place from the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``) and joins one process group: gloo for what the harness exchanges (numpy arrays on the
CPU), plus NCCL for CUDA tensors when the ranks have GPUs, one per rank (``LOCAL_RANK``).

How work is split, and why the result equals one process's:

* White-box loops (evaluation, attacks, transfer): the run's batches, ``batch_size`` consecutive images
  each exactly as one process forms them, are dealt out in contiguous blocks (:func:`shard`). PyTorch on
  a CPU is not batch-invariant (an image's logits move in the last bit with the other images of its
  batch), so only the same batches give the same adversarial images; each batch keeps its seed
  (``batch_seed(seed, global batch index)``) and each rank's confusion matrix is summed.
* Black-box attacks run in lockstep: every rank holds the whole run (its images, state and random
  stream) and sends only its contiguous slice of each iteration's candidates to the engine; the scores
  are gathered, so every rank takes the same decisions as one process would.

Rank 0 alone prints and writes outputs. Inside :func:`local` (a model trained or an artifact built by
one rank while the others wait on its lock) nothing is sharded.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from harness.errors import HarnessError

T = TypeVar("T")
# How long a rank waits at a collective for the others (seconds): a rank that hangs, rather than dies, stops
# the job after this long. Work between two collectives (one shard of an attack) must fit in it.
TIMEOUT_ENV = "HARNESS_DISTRIBUTED_TIMEOUT"
DEFAULT_TIMEOUT_S = 6 * 3600
PEER_FAILED = ("another rank of this torchrun job stopped (failed or was killed); its own message says why, "
               "and this rank stops too")


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` in 0..size-1; ``local_rank``: its index on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that prints and writes."""
        return self.rank == 0


SINGLE = World()
_joined = SINGLE  # the process group this process joined (SINGLE when it runs alone)
_local_depth = 0  # > 0 inside local(): work of this process alone


def world() -> World:
    """The world collectives and shards use now: the job's, or SINGLE inside :func:`local`."""
    return SINGLE if _local_depth else _joined


def job() -> World:
    """The job this process belongs to, also inside :func:`local` (for who prints and writes)."""
    return _joined


def environment_world(environ: dict[str, str] | None = None) -> World:
    """The world torchrun describes in ``environ`` (default os.environ): SINGLE when WORLD_SIZE is unset or 1.

    A one-line HarnessError when the variables are not integers or are inconsistent."""
    env = os.environ if environ is None else environ
    try:
        rank, size, local_rank = (int(env.get(name, "1" if name == "WORLD_SIZE" else "0"))
                                  for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except ValueError:
        raise HarnessError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (they are set by torchrun; "
                           "start the harness with torchrun ... -m harness COMMAND)") from None
    if size < 1 or not 0 <= rank < size or local_rank < 0:
        raise HarnessError(f"RANK {rank}, WORLD_SIZE {size}, LOCAL_RANK {local_rank} are not a place in a job "
                           "(0 <= RANK < WORLD_SIZE); start the harness with torchrun ... -m harness COMMAND")
    return World(rank, size, local_rank)


def start(environ: dict[str, str] | None = None) -> World:
    """Join the job torchrun started (nothing to do for a single process). Returns this process's World."""
    global _joined
    place = environment_world(environ)
    if place.size == 1 or _joined.size > 1:
        return _joined
    env = os.environ if environ is None else environ
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in env]
    if missing:
        raise HarnessError(f"WORLD_SIZE is {place.size} but {' and '.join(missing)} is not set; start the harness "
                           "with torchrun ... -m harness COMMAND")
    backend = "gloo"
    if torch.cuda.is_available():
        if place.local_rank >= torch.cuda.device_count():
            raise HarnessError(f"LOCAL_RANK {place.local_rank} has no GPU: this node has "
                               f"{torch.cuda.device_count()}; start at most that many processes per node (or "
                               "hide the GPUs with CUDA_VISIBLE_DEVICES= for ranks that run on the CPU)")
        torch.cuda.set_device(place.local_rank)
        backend = "cpu:gloo,cuda:nccl"
    try:
        torch.distributed.init_process_group(backend=backend, rank=place.rank, world_size=place.size,
                                             timeout=datetime.timedelta(seconds=_timeout_s(env)))
    except (RuntimeError, ValueError) as e:
        raise HarnessError(f"rank {place.rank} could not join the torchrun job ({_first_line(e)}); check "
                           "MASTER_ADDR/MASTER_PORT and that every node runs the same command") from None
    _joined = place
    return place


def stop() -> None:
    """Leave the job (at the end of a command); safe to call when none was joined."""
    global _joined
    if _joined.size > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _joined = SINGLE


def _timeout_s(env: Any) -> float:
    text = env.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise HarnessError(f"{TIMEOUT_ENV}={text!r}: give the seconds a rank waits for the others, a number > 0")
    return value


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


@contextmanager
def local() -> Iterator[None]:
    """Work done by this process alone (no shards, no collectives), e.g. a build behind a file lock."""
    global _local_depth
    _local_depth += 1
    try:
        yield
    finally:
        _local_depth -= 1


def writes_here() -> bool:
    """Whether this process's writes reach their files: always, except on ranks other than 0 outside
    :func:`local` (the results of shared work are written once, by rank 0)."""
    return _joined.main or _local_depth > 0


def shard(count: int, place: World | None = None) -> range:
    """The items ``0..count-1`` that rank ``place.rank`` of ``place.size`` takes: a contiguous block,
    ``[floor(r * count / size), floor((r + 1) * count / size))``. Blocks are in rank order, cover every item
    exactly once and differ in length by at most one; with more ranks than items some blocks are empty."""
    place = world() if place is None else place
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return range(place.rank * count // place.size, (place.rank + 1) * count // place.size)


def shards(count: int) -> list[range]:
    """Every rank's block of ``count`` items (:func:`shard`), in rank order: what each rank takes, known to all."""
    place = world()
    return [shard(count, World(rank, place.size)) for rank in range(place.size)]


def batches(count: int, batch_size: int) -> list[tuple[int, slice]]:
    """(global batch index, item slice) of this rank's batches: the batches of ``batch_size`` consecutive items
    one process makes of ``count`` items (the last may be smaller), dealt out by :func:`shard`."""
    n_batches = -(-count // batch_size)
    return [(b, slice(b * batch_size, min((b + 1) * batch_size, count))) for b in shard(n_batches)]


def items_in(parts: Sequence[tuple[int, slice]]) -> int:
    """How many items the batches of :func:`batches` hold."""
    return sum(s.stop - s.start for _, s in parts)


def _collective(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except (RuntimeError, ValueError) as e:  # gloo reports a dead peer as a RuntimeError (DistBackendError)
        raise HarnessError(f"{PEER_FAILED} ({_first_line(e)})", exit_code=1) from None


def sum_over_ranks(array: np.ndarray) -> np.ndarray:
    """The element-wise sum of ``array`` (int64 or float64, the same shape on every rank) over the ranks."""
    if world().size == 1:
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array).copy())
    _collective(torch.distributed.all_reduce, tensor)
    return tensor.numpy()


def gather(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order, on every rank (picklable objects: arrays, numbers, lists)."""
    place = world()
    if place.size == 1:
        return [obj]
    gathered: list[Any] = [None] * place.size
    _collective(torch.distributed.all_gather_object, gathered, obj)
    return gathered


def gather_known_rows(mine: np.ndarray | None, counts: Sequence[int], row_shape: tuple[int, ...],
                      dtype: np.dtype | type) -> np.ndarray:
    """Every rank's rows joined in rank order, when every rank knows how many rows each sends (``counts``, one per
    rank) and their shape and dtype: one fixed-size all-gather of tensors, nothing pickled (for exchanges made at
    every iteration of a run). ``mine``: this rank's ``counts[rank]`` rows (None when it has none)."""
    place = world()
    if place.size == 1:
        return np.asarray(mine, dtype) if mine is not None else np.empty((0, *row_shape), dtype)
    top = max(counts)
    if top == 0:
        return np.empty((0, *row_shape), dtype)
    buffer = np.zeros((top, *row_shape), dtype)
    if counts[place.rank]:
        buffer[:counts[place.rank]] = mine
    sent = torch.from_numpy(buffer)
    received = [torch.empty_like(sent) for _ in range(place.size)]
    _collective(torch.distributed.all_gather, received, sent)
    return np.concatenate([t.numpy()[:count] for t, count in zip(received, counts, strict=True)])


def gather_rows(array: np.ndarray) -> np.ndarray:
    """Each rank's rows (its shard, in rank order) joined into the whole array, on every rank."""
    return array if world().size == 1 else np.concatenate(gather(array), axis=0)


def everywhere(flag: bool) -> bool:
    """Whether ``flag`` is true on every rank (one answer for all: e.g. whether every rank can reuse a cache
    entry, so that all of them either reuse it or compute it together)."""
    if world().size == 1:
        return bool(flag)
    return bool(sum_over_ranks(np.array([0 if flag else 1], np.int64))[0] == 0)


def from_main(make: Callable[[], T]) -> T:
    """``make()`` run on rank 0 and its result (picklable) handed to every rank; a HarnessError raised by it is
    raised on every rank. E.g. a saved state read once, so that the ranks of a lockstep run start alike."""
    if world().size == 1:
        return make()
    result: tuple[str, Any] = ("", None)
    if world().main:
        try:
            result = ("value", make())
        except HarnessError as e:
            result = ("error", (str(e), e.exit_code))
    box = [result]
    _collective(torch.distributed.broadcast_object_list, box, 0)
    kind, value = box[0]
    if kind == "error":
        raise HarnessError(value[0], exit_code=value[1])
    return value


def barrier() -> None:
    """Wait until every rank is here."""
    if world().size > 1:
        _collective(torch.distributed.barrier)


def same_inputs(what: str, *arrays: np.ndarray, batch_size: int = 0) -> None:
    """A one-line HarnessError on every rank unless every rank shards the same ``arrays`` (the images and
    labels of a loop, hashed) in the same batches: ranks on other data would be summed into a silently wrong
    score."""
    if world().size == 1:
        return
    digest = hashlib.sha256(repr([(a.shape, a.dtype.str) for a in arrays] + [batch_size]).encode())
    for array in arrays:
        digest.update(np.ascontiguousarray(array).data)
    same_on_every_rank(digest.hexdigest(), what)


def same_on_every_rank(value: Any, what: str) -> None:
    """A one-line HarnessError on every rank when ``value`` (picklable) differs between ranks: the ranks must
    run the same command on the same data."""
    if world().size == 1:
        return
    digests = gather(pickle.dumps(value))
    if any(d != digests[0] for d in digests):
        differing = [rank for rank, d in enumerate(digests) if d != digests[0]]
        raise HarnessError(f"the ranks of this job disagree on {what} (rank 0 vs ranks {differing}); every rank "
                           "must run the same command on the same data")
