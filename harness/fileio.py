"""Atomic file writes and content hashes: nothing is ever left half-written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On any exception the temporary file is removed and ``target`` is untouched. The file ends with
    the mode a plain ``open()`` would give it: an existing target's mode, else 0666 less the umask.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path, mode = _new_temp_file(target)
    try:
        yield tmp_path
        if target.exists():
            mode = target.stat().st_mode & 0o7777
        tmp_path.chmod(mode)  # the writer may have replaced the file, so set it again
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _new_temp_file(target: Path) -> tuple[Path, int]:
    """An empty file with a fresh name beside ``target``, and its mode. Created like ``open()`` does
    (0666 through the kernel's umask), which avoids reading the process-wide umask, a race with threads."""
    while True:
        path = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            return path, os.fstat(fd).st_mode & 0o7777
        finally:
            os.close(fd)


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def read_json(path: str | os.PathLike, what: str = "") -> Any:
    """The JSON document in ``path``; a one-line HarnessError, prefixed with ``what`` (e.g. "results file "),
    when it is missing, unreadable or not JSON (a truncated write, say)."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise HarnessError(f"{what}{path} does not exist") from None
    except OSError as e:
        raise HarnessError(f"{what}{path} cannot be read ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HarnessError(f"{what}{path} is not valid JSON ({e}); re-run to regenerate it") from None


def write_json_atomic(target: str | os.PathLike, obj: Any) -> None:
    write_bytes_atomic(target, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    """The harness cache: ``$HARNESS_CACHE`` if set, else ``~/.cache/harness``."""
    env = os.environ.get("HARNESS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "harness"
