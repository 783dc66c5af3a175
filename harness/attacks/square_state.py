"""Saving and loading a black-box run (Square Attack or hard-label attack), so that a stopped run continues where
it was.

One .npz file per run (numpy's format, read with ``allow_pickle=False``), always replaced atomically: the
arrays of :class:`SquareState` (a :class:`HardLabelState` has its signs in place of x_best) plus a JSON header
(config, iteration, generator state, curve, timings, fingerprint, a caller ``context`` such as model, engine
and precision that must match on resume, and a sha256 checksum of the header and every array).

Reading trusts nothing in the file: its size and each member's are bounded by what a state of the run can
be before anything is read; the checksum refuses a truncated, damaged or edited file; and a state that
passes it must still keep every guarantee of the attack for this run (``SquareAttack.state_problem``,
``HardLabelAttack.state_problem``: budget, eps-ball, [0, 1], finite losses, counts, curve, generator). Any
failure is one HarnessError line naming the file, what is wrong and how to start afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.attacks.hard_label import HardLabelAttack, HardLabelConfig, HardLabelState
from harness.attacks.query_loop import BlackBoxAttack, CurvePoint, short_repr
from harness.attacks.square import SquareAttack, SquareConfig, SquareState
from harness.errors import HarnessError
from harness.fileio import atomic_path, cache_dir

STATE_VERSION = 2  # 2: the checksum
_PROGRESS = ("best_loss", "best_pred", "correct", "labelled", "queries")
_HEADER_KEYS = {"version", "config", "iteration", "rng", "fingerprint", "curve", "engine_seconds", "seconds",
                "context", "checksum"}
_NPY_HEADER = 4096  # bytes a member may have beyond its array's data: numpy's own header, padded
_JSON_BASE = 1 << 20  # characters of header JSON beyond its curve: config, generator, context
_JSON_PER_POINT = 256  # characters per curve point, about 3x what one takes
_START_AFRESH = "delete it or run without --resume to start afresh"


@dataclass(frozen=True)
class _Kind:
    """What differs between the attacks' state files: the attack (its name in messages, state class and
    perturbation array), its config class and the cache folder."""

    attack: type[BlackBoxAttack]
    config: type
    folder: str

    @property
    def title(self) -> str:
        return self.attack.title

    @property
    def state(self) -> type:
        return self.attack.state_type

    @property
    def perturbation(self) -> str:
        return self.attack.perturbation[0]

    @property
    def value_bytes(self) -> int:
        return np.dtype(self.attack.perturbation[1]).itemsize

    @property
    def arrays(self) -> tuple[str, ...]:
        return (self.perturbation, *_PROGRESS)


_KINDS = (_Kind(SquareAttack, SquareConfig, "square"), _Kind(HardLabelAttack, HardLabelConfig, "hardlabel"))


def _kind_of(config: Any) -> _Kind:
    for kind in _KINDS:
        if isinstance(config, kind.config):
            return kind
    raise TypeError(f"no state file format for {type(config).__name__}")


def run_context(model: str, size: str, weights_sha256: str, engine_info: dict[str, Any], data: dict[str, Any],
                n_images: int, config: SquareConfig | HardLabelConfig) -> dict[str, Any]:
    """What a saved run must have been run with to be continued: the same weights, engine (name,
    precision, device, library, artifact), images (``data``: the data set's description) and attack."""
    return {"model": model, "size": size, "weights_sha256": weights_sha256, "engine": engine_info, "data": data,
            "n_images": n_images, "config": config.as_dict()}


def state_path(context: dict[str, Any], prefix: str = "", config: SquareConfig | HardLabelConfig | None = None
               ) -> Path:
    """Where the state of the run that ``context`` (see :func:`run_context`) describes is kept, in the cache (the
    folder of ``config``'s attack; default: the Square Attack's); ``prefix`` keeps one caller's runs apart from
    another's."""
    key = hashlib.sha256(json.dumps(context, sort_keys=True).encode()).hexdigest()[:16]
    engine = context["engine"]
    folder = _KINDS[0].folder if config is None else _kind_of(config).folder
    return cache_dir() / folder / f"{prefix}{context['model']}-{engine['name']}-{engine['precision']}-{key}.npz"


def save_state(path: str | os.PathLike, state: SquareState | HardLabelState, context: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically; ``context`` (JSON-serialisable) is stored beside it."""
    kind = _kind_of(state.config)
    header = {"version": STATE_VERSION, "config": state.config.as_dict(), "iteration": state.iteration,
              "rng": state.rng, "fingerprint": state.fingerprint,
              "curve": [vars(p) for p in state.curve], "engine_seconds": state.engine_seconds,
              "seconds": state.seconds, "context": context}
    header = json.loads(json.dumps(header))  # as it will be read back: tuples become lists
    arrays = {name: np.ascontiguousarray(getattr(state, name)) for name in kind.arrays}
    header["checksum"] = _checksum(header, arrays, kind.arrays)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, header=np.array(json.dumps(header)), **arrays)


def load_state(path: str | os.PathLike, context: dict[str, Any], config: SquareConfig | HardLabelConfig,
               images: np.ndarray, labels: np.ndarray, num_classes: int | None = None
               ) -> SquareState | HardLabelState:
    """The state saved at ``path`` of the run of ``config`` on ``images`` and ``labels`` (and an engine of
    ``num_classes`` classes, when given), fit to continue it.

    A one-line HarnessError naming the file if it is missing, unreadable, larger than a state of this run can
    be, fails its checksum, was saved with another ``context``, or breaks a guarantee of the attack."""
    kind = _kind_of(config)
    if not os.path.isfile(path):
        raise HarnessError(f"no saved {kind.title} state at {path}; start the run without --resume")
    config.validate()
    limits = _member_limits(kind, config, images)
    try:
        size = os.path.getsize(path)
        if size > sum(limits.values()) + _NPY_HEADER:
            raise HarnessError(f"{size} bytes, more than a state of this run can have")
        header, arrays = _read(path, limits, kind.arrays)
    except HarnessError as e:
        raise HarnessError(f"cannot read the {kind.title} state {path} ({e}); {_START_AFRESH}") from None
    except Exception as e:  # numpy's .npy header parser and zipfile raise many kinds (TokenError, struct.error...)
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        raise HarnessError(f"cannot read the {kind.title} state {path} ({reason}); {_START_AFRESH}") from None
    saved = header["context"]
    context = json.loads(json.dumps(context))  # compare as stored: tuples become lists
    if saved != context:
        raise HarnessError(f"the state {path} was saved by another run ({_differences(saved, context)}); "
                           f"{_START_AFRESH}")
    try:
        state = kind.state(config=kind.config(**header["config"]), iteration=header["iteration"],
                           rng=header["rng"], fingerprint=header["fingerprint"],
                           curve=[CurvePoint(**point) for point in header["curve"]],
                           engine_seconds=header["engine_seconds"], seconds=header["seconds"], **arrays)
        problem = kind.attack(config).state_problem(state, images, labels, num_classes)
    except (TypeError, ValueError, OverflowError) as e:  # a config or curve point of other fields or types
        problem = f"does not hold a state of this attack ({type(e).__name__}: {str(e)[:200]})"
    if problem is not None:
        raise HarnessError(f"the {kind.title} state {path} {problem}; {_START_AFRESH}")
    return state


def _member_limits(kind: _Kind, config: SquareConfig | HardLabelConfig, images: np.ndarray) -> dict[str, int]:
    """The most bytes each member of a state file of this run can hold."""
    n, c, h, w = images.shape
    points = config.queries // config.curve_step + 2
    data = {kind.perturbation: kind.value_bytes * n * c * h * w, "best_loss": 8 * n, "best_pred": n * h * w,
            "correct": 8 * n, "labelled": 8 * n, "queries": 8 * n,
            "header": 4 * (_JSON_BASE + _JSON_PER_POINT * points)}
    return {name: size + _NPY_HEADER for name, size in data.items()}


def _read(path: str | os.PathLike, limits: dict[str, int], names: tuple[str, ...]
          ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and the arrays of the file, its members' sizes, header fields and checksum checked."""
    with np.load(path, allow_pickle=False) as z:
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise HarnessError("not an .npz archive")
        members = {info.filename: info.file_size for info in z.zip.infolist()}
        if set(members) != {f"{name}.npy" for name in limits}:
            raise HarnessError(f"members {short_repr(sorted(members))}, expected {sorted(f'{n}.npy' for n in limits)}")
        for name, limit in limits.items():
            if members[f"{name}.npy"] > limit:
                raise HarnessError(f"{name} has {members[f'{name}.npy']} bytes, more than this run's state can have")
        text = z["header"]
        arrays = {name: z[name] for name in names}
    if text.ndim != 0 or text.dtype.kind != "U":
        raise HarnessError("its header is not a JSON string")
    header = json.loads(str(text))
    if not isinstance(header, dict) or set(header) != _HEADER_KEYS:
        keys = short_repr(sorted(header)) if isinstance(header, dict) else type(header).__name__
        raise HarnessError(f"header fields {keys}, expected {sorted(_HEADER_KEYS)}")
    if header["version"] != STATE_VERSION or type(header["version"]) is not int:
        raise HarnessError(f"state version {short_repr(header['version'])}, expected {STATE_VERSION}")
    if header["checksum"] != _checksum({k: v for k, v in header.items() if k != "checksum"}, arrays, names):
        raise HarnessError("its checksum does not match its contents: the file is damaged or was edited")
    if not isinstance(header["context"], dict) or not isinstance(header["config"], dict) \
            or not isinstance(header["curve"], list) or not all(isinstance(p, dict) for p in header["curve"]):
        raise HarnessError("its context, config or curve is not of the saved form")
    return header, arrays


def _checksum(header: dict[str, Any], arrays: dict[str, np.ndarray], names: tuple[str, ...] | None = None) -> str:
    """sha256 of the header (without its checksum, keys sorted) and of each array's dtype, shape and bytes (the
    arrays ``names``, in order; default: the Square Attack's)."""
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for name in names or _KINDS[0].arrays:
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name} {array.dtype.str} {array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> str:
    keys = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    return ", ".join(f"{short_repr(k)}: {short_repr(saved.get(k))} then, {short_repr(current.get(k))} now"
                     for k in keys[:8])
