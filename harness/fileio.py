"""Atomic file writes, output-path checks and content hashes: nothing is ever left half-written.

Every file the harness writes goes through :func:`atomic_path`: a temporary file beside the target, renamed
onto it on success. The temporary name carries the host and the writer's process id
(``.NAME.<host>-<pid>.<token>.tmp``), so that a later write to the same place removes what a killed writer
left behind. An OSError while writing becomes a one-line HarnessError. Commands call
:func:`check_output_file` / :func:`check_output_dir` for each output option before their expensive work.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import stat
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, error_line

MAX_JSON_BYTES = 256 << 20  # results, suite.json and curves the harness writes are far smaller
_DEFAULT_NAME_MAX = 255
_DEFAULT_PATH_MAX = 4096
_TOKEN_HEX = 12  # characters of the random part of a temporary name
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On any exception the temporary file is removed and ``target`` is untouched; an OSError (full disk,
    read-only or missing directory, a name too long...) becomes a one-line HarnessError naming ``target``.
    The file ends with the mode a plain ``open()`` would give it: an existing target's mode, else 0666
    less the umask. Temporary files of this target left by a writer that no longer runs (killed) are removed.
    Under torchrun the ranks other than 0 write into the temporary file only (``distributed.writes_here``):
    what the ranks computed together is written once.
    """
    from harness import distributed  # imports torch: fileio itself stays light for the modules that need only it

    target = Path(target)
    tmp_path: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(target)
        tmp_path, mode = _new_temp_file(target)
        yield tmp_path
        if not distributed.writes_here():
            return  # the temporary file is removed below
        if target.exists():
            mode = target.stat().st_mode & 0o7777
        tmp_path.chmod(mode)  # the writer may have replaced the file, so set it again
        os.replace(tmp_path, target)
    except OSError as e:
        raise HarnessError(f"cannot write {_show(target)}: {_reason(e, tmp_path)}") from None
    finally:
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def build_lock(target: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``target`` (a cache entry about to be built): a second process (another rank of
    a torchrun job, or another run on the same cache) waits here until the first has built it, then finds it.
    The lock is ``flock`` on ``.NAME.lock`` beside ``target``; the kernel drops it when its holder dies."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target.with_name(f".{_temp_stem(target.name, _name_max(target.parent))}.lock"),
                     os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise HarnessError(f"cannot write {_show(target)}: {_reason(e)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _temp_stem(name: str, name_max: int) -> str:
    """``name``, shortened (by whole characters) so that the temporary name fits ``name_max`` bytes."""
    room = name_max - len(f"..{_HOST}-{2**22}.{'0' * _TOKEN_HEX}.tmp")
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    return name


def _temp_pattern(target: Path, name_max: int) -> re.Pattern[str]:
    stem = re.escape(_temp_stem(target.name, name_max))
    return re.compile(rf"\.{stem}\.([0-9a-f]{{6}})-([0-9]{{1,10}})\.[0-9a-f]{{{_TOKEN_HEX}}}\.tmp")


def _new_temp_file(target: Path) -> tuple[Path, int]:
    """An empty file with a fresh name beside ``target``, and its mode. Created like ``open()`` does
    (0666 through the kernel's umask), which avoids reading the process-wide umask, a race with threads."""
    stem = _temp_stem(target.name, _name_max(target.parent))
    for _ in range(100):  # a clash of 48 random bits is all but impossible; the bound keeps the loop finite
        path = target.with_name(f".{stem}.{_HOST}-{os.getpid()}.{secrets.token_hex(_TOKEN_HEX // 2)}.tmp")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            return path, os.fstat(fd).st_mode & 0o7777
        finally:
            os.close(fd)
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(target.parent))


@contextlib.contextmanager
def scratch_dir(beside: str | os.PathLike) -> Iterator[Path]:
    """A fresh private directory beside ``beside`` (same file system, so its files can be renamed onto the
    target), removed on exit. Named like atomic_path's temporary files: scratch directories that a killed
    process left there are removed by the next one. OSError becomes a one-line HarnessError."""
    target = Path(beside)
    path: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(target)
        stem = _temp_stem(target.name, _name_max(target.parent))
        path = target.with_name(f".{stem}.{_HOST}-{os.getpid()}.{secrets.token_hex(_TOKEN_HEX // 2)}.tmp")
        path.mkdir()
        yield path
    except OSError as e:
        raise HarnessError(f"cannot write {_show(target)}: {_reason(e)}") from None
    finally:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)


def remove_stale_temp_files(target: str | os.PathLike) -> list[Path]:
    """Remove the temporary files (and scratch directories) of ``target`` whose writer, a process of this host,
    no longer runs (it was killed mid-write); returns them. Files of live writers and of other hosts are left
    alone; a file that another process removes first is simply skipped."""
    target = Path(target)
    pattern = _temp_pattern(target, _name_max(target.parent))
    removed = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or match[1] != _HOST or _process_alive(int(match[2])):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):  # a scratch_dir
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # a write of this process (another thread) may still be in progress
    if pid <= 0:
        return False  # no writer has such a pid (and os.kill would signal a process group)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # EPERM: it runs, as another user; anything else: do not guess
        return True
    return True


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """Check that a file can be written at ``path`` (by :func:`atomic_path`) before the work that produces it.

    ``path`` may exist as a regular file (it is replaced) or not exist; its missing parent directories must be
    creatable. The test is honest: a temporary file is created and removed in the nearest existing directory.
    Raises a one-line HarnessError naming ``option`` and the reason; returns ``path`` as a Path.
    """
    path = _as_path(path, option)
    info = _stat(path, option)
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise HarnessError(f"{option} {_show(path)} is a directory; give a file name")
        if not stat.S_ISREG(info.st_mode):
            raise HarnessError(f"{option} {_show(path)} is not a regular file (a device, pipe or socket); "
                               "give a file name")
    _check_creatable(path, option)
    return path


def check_output_dir(path: str | os.PathLike, option: str) -> Path:
    """Check that ``path`` is, or can be created as, a directory in which files can be written.

    Raises a one-line HarnessError naming ``option`` and the reason; returns ``path`` as a Path.
    """
    path = _as_path(path, option)
    info = _stat(path, option)
    if info is None and path.is_symlink():  # mkdir would fail on the link after the work ("File exists")
        raise HarnessError(f"{option} {_show(path)} is a symbolic link to {_show(Path(os.readlink(path)))}, which "
                           "does not exist; create that directory or give another path")
    if info is not None and not stat.S_ISDIR(info.st_mode):
        raise HarnessError(f"{option} {_show(path)} is a file, not a directory")
    if info is None:
        _check_creatable(path, option)
    else:
        _probe(path, path / "probe", option)
    return path


def check_outputs(files: Mapping[str, str | os.PathLike | None],
                  dirs: Mapping[str, str | os.PathLike | None] | None = None) -> None:
    """:func:`check_output_file` for each ``{option: path}`` of ``files`` and :func:`check_output_dir` for each
    of ``dirs`` (None: the option was not given), and no two of the files are the same: what a command calls
    before its expensive work."""
    for option, path in (dirs or {}).items():
        if path is not None:
            check_output_dir(path, option)
    for option, path in files.items():
        if path is not None:
            check_output_file(path, option)
    _check_distinct(files)


def _check_distinct(paths: Mapping[str, str | os.PathLike | None]) -> None:
    """HarnessError when two output options (``{option: path}``; None: not given) name the same file."""
    seen: dict[str, str] = {}
    for option, path in paths.items():
        if path is None:
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise HarnessError(f"{seen[key]} and {option} name the same file {_show(Path(path))}; give two names")
        seen[key] = option


def _as_path(path: str | os.PathLike, option: str) -> Path:
    text = os.fspath(path)
    if not text:
        raise HarnessError(f"{option}: the path is empty")
    if "\0" in str(text):
        raise HarnessError(f"{option}: the path contains a NUL character")
    return Path(text)


def _stat(path: Path, option: str) -> os.stat_result | None:
    """``os.stat(path)``, None when it does not exist (or a component is a file: reported by the caller)."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        hint = f"; each name may have at most {_DEFAULT_NAME_MAX} bytes" if e.errno == errno.ENAMETOOLONG else ""
        raise HarnessError(f"{option} {_show(path)}: {e.strerror or type(e).__name__}{hint}") from None


def _check_creatable(path: Path, option: str) -> None:
    """The missing components of ``path`` can be created: the nearest existing ancestor is a writable
    directory and every new name fits the file system's limits."""
    missing = [path.name]
    ancestor = path.parent
    while True:
        info = _stat(ancestor, option)
        if info is not None:
            break
        if ancestor.parent == ancestor:  # a missing root: only possible for odd relative paths
            raise HarnessError(f"{option} {_show(path)}: no existing directory above it")
        missing.append(ancestor.name)
        ancestor = ancestor.parent
    if not stat.S_ISDIR(info.st_mode):
        raise HarnessError(f"{option} {_show(path)}: {_show(ancestor)} is a file, not a directory")
    name_max = _name_max(ancestor)
    for name in missing:
        if len(os.fsencode(name)) > name_max:
            raise HarnessError(f"{option} {_show(path)}: the name {_show(Path(name))} is too long "
                               f"({len(os.fsencode(name))} bytes; this file system allows {name_max})")
    length = len(os.fsencode(os.path.abspath(path)))
    if length >= _path_max(ancestor):
        raise HarnessError(f"{option} {_show(path)}: the path is too long ({length} bytes; the limit is "
                           f"{_path_max(ancestor)})")
    _probe(ancestor, path, option)


def _probe(directory: Path, path: Path, option: str) -> None:
    """Create and remove a temporary file in ``directory``: the honest test that files can be written there."""
    try:
        remove_stale_temp_files(directory / "harness-probe")  # a probe of a killed process
        probe, _ = _new_temp_file(directory / "harness-probe")
    except OSError as e:
        raise HarnessError(f"{option} {_show(path)}: cannot create files in {_show(directory)} "
                           f"({e.strerror or type(e).__name__})") from None
    with contextlib.suppress(OSError):
        probe.unlink()


def _name_max(directory: Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return _DEFAULT_NAME_MAX


def _path_max(directory: Path) -> int:
    try:
        return os.pathconf(directory, "PC_PATH_MAX")
    except (OSError, ValueError):
        return _DEFAULT_PATH_MAX


def _reason(e: OSError, tmp_path: Path | None = None) -> str:
    """An OSError as a short reason: its strerror, and the file it concerns when that is not the target."""
    reason = e.strerror or type(e).__name__
    filename = e.filename
    if filename is not None and (tmp_path is None or os.fspath(filename) != os.fspath(tmp_path)):
        reason += f" ({_show(Path(os.fsdecode(filename)))})"
    return reason


def _show(path: Path) -> str:
    """``path`` for a one-line message: very long paths keep their start and end."""
    text = str(path)
    return text if len(text) <= 160 else f"{text[:100]}...{text[-40:]}"


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def read_text(path: str | os.PathLike, max_bytes: int, what: str = "", kind: str = "text") -> str:
    """The UTF-8 text of regular file ``path`` (a leading byte-order mark dropped), read bounded: a one-line
    HarnessError, prefixed with ``what`` (e.g. "suite file "), when it is missing, not a regular file (a FIFO
    would block, a device never end), unreadable, larger than ``max_bytes`` or not UTF-8. ``kind`` names
    what the file should be in the size message."""
    if os.path.exists(path) and not os.path.isfile(path):
        raise HarnessError(f"{what}{path} is not a regular file")
    try:
        with open(path, "rb") as f:  # a huge (or sparse) file is not read into memory
            too_large = os.fstat(f.fileno()).st_size > max_bytes
            raw = b"" if too_large else f.read(max_bytes + 1)
    except FileNotFoundError:
        raise HarnessError(f"{what}{path} does not exist") from None
    except OSError as e:
        raise HarnessError(f"{what}{path} cannot be read ({e.strerror or e})") from None
    if too_large or len(raw) > max_bytes:
        size = f"{max_bytes >> 20} MiB" if max_bytes >= 1 << 20 else f"{max_bytes} bytes"
        raise HarnessError(f"{what}{path} is larger than {size}; it should be {kind}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise HarnessError(f"{what}{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                           "save it as UTF-8") from None


def read_json(path: str | os.PathLike, what: str = "") -> Any:
    """The JSON document in ``path``; a one-line HarnessError, prefixed with ``what`` (e.g. "results file "),
    when it is missing, unreadable, too large (:func:`read_text`) or not JSON (a truncated write, say)."""
    text = read_text(path, MAX_JSON_BYTES, what, "a file the harness writes")
    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except RecursionError:
        raise HarnessError(f"{what}{path} is not a harness file: its JSON is nested too deeply to read") from None
    except ValueError as e:  # JSONDecodeError, an integer of more than 4300 digits, a repeated key
        raise HarnessError(f"{what}{path} is not valid JSON ({e}); re-run to regenerate it") from None


def parse_toml(text: str, where: str, what: str) -> dict[str, Any]:
    """The TOML document ``text``; a one-line HarnessError prefixed with ``where`` (e.g. the file name) when it is
    not TOML, nested too deeply, or holds an integer too long to read; ``what`` names the document ("a suite
    file", "a model card") in those messages."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise HarnessError(f"{where}: not valid TOML ({error_line(e)})") from None
    except RecursionError:
        raise HarnessError(f"{where}: not {what}: its arrays or tables are nested too deeply to read") from None
    except ValueError as e:  # an integer of more than 4300 digits
        raise HarnessError(f"{where}: not {what}: {error_line(e)}") from None


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A ``json`` ``object_pairs_hook``: the object, or ValueError when it names a key twice. Readers disagree on
    which of two values counts (Python's takes the last), so a repeated key could pass one number off as another."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"the key {twice[:40]!r} appears twice in one object")
    return obj


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


def file_stem(name: str) -> str:
    """``name`` (a model or card name: any printable text) as a safe file-name part: letters, digits, ``._-``
    kept, everything else ``_``, no leading dot, at most 100 characters."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")[:100] or "model"
