"""Saving and loading a Square Attack run, so that a stopped run continues where it was.

One .npz file per run, always replaced atomically: the arrays of :class:`SquareState` plus a
JSON header (config, iteration, generator state, curve, timings, fingerprint, and a caller
``context`` such as model, engine and precision that must match on resume).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.attacks.square import CurvePoint, SquareConfig, SquareState
from harness.errors import HarnessError
from harness.fileio import atomic_path, cache_dir

STATE_VERSION = 1
_ARRAYS = ("x_best", "best_loss", "best_pred", "correct", "labelled", "queries")


def run_context(model: str, size: str, weights_sha256: str, engine_info: dict[str, Any], data: dict[str, Any],
                n_images: int, config: SquareConfig) -> dict[str, Any]:
    """What a saved run must have been run with to be continued: the same weights, engine (name,
    precision, device, library, artifact), images (``data``: the data set's description) and attack."""
    return {"model": model, "size": size, "weights_sha256": weights_sha256, "engine": engine_info, "data": data,
            "n_images": n_images, "config": config.as_dict()}


def state_path(context: dict[str, Any], prefix: str = "") -> Path:
    """Where the state of the run that ``context`` (see :func:`run_context`) describes is kept, in the cache;
    ``prefix`` keeps one caller's runs apart from another's."""
    key = hashlib.sha256(json.dumps(context, sort_keys=True).encode()).hexdigest()[:16]
    engine = context["engine"]
    return cache_dir() / "square" / f"{prefix}{context['model']}-{engine['name']}-{engine['precision']}-{key}.npz"


def save_state(path: str | os.PathLike, state: SquareState, context: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically; ``context`` (JSON-serialisable) is stored beside it."""
    header = {"version": STATE_VERSION, "config": state.config.as_dict(), "iteration": state.iteration,
              "rng": state.rng, "fingerprint": state.fingerprint,
              "curve": [vars(p) for p in state.curve], "engine_seconds": state.engine_seconds,
              "seconds": state.seconds, "context": context}
    arrays = {name: getattr(state, name) for name in _ARRAYS}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, header=np.array(json.dumps(header)), **arrays)


def load_state(path: str | os.PathLike, context: dict[str, Any]) -> SquareState:
    """The state saved at ``path``; a HarnessError if it is missing, unreadable, or was saved
    with another ``context``."""
    if not os.path.isfile(path):
        raise HarnessError(f"no saved Square Attack state at {path}; start the run without --resume")
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            arrays = {name: z[name] for name in _ARRAYS}
        if header.get("version") != STATE_VERSION:
            raise ValueError(f"state version {header.get('version')}, expected {STATE_VERSION}")
        state = SquareState(config=SquareConfig(**header["config"]), iteration=int(header["iteration"]),
                            rng=header["rng"], fingerprint=header["fingerprint"],
                            curve=[CurvePoint(**p) for p in header["curve"]],
                            engine_seconds=float(header["engine_seconds"]), seconds=float(header["seconds"]),
                            **arrays)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise HarnessError(f"cannot read the Square Attack state {path} ({e}); start the run without --resume"
                           ) from None
    context = json.loads(json.dumps(context))  # compare as stored: tuples become lists
    if header["context"] != context:
        raise HarnessError(f"the state {path} was saved by another run ({_differences(header['context'], context)}); "
                           "start the run without --resume")
    return state


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> str:
    keys = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    return ", ".join(f"{k}: {saved.get(k)!r} then, {current.get(k)!r} now" for k in keys)
