"""Reading the small text files of a data folder (``classes.txt``, ``train.txt``, ``val.txt``): UTF-8, one entry
a line, blank lines skipped; anything else is one HarnessError naming the file. Lists of image ids name each
image once, by a plain file name (never a path that reaches outside the data folder)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from harness.errors import HarnessError
from harness.fileio import read_text

MAX_LIST_BYTES = 16 * 1024 * 1024  # far above any real list; keeps a wrong file from being read whole


def read_lines(path: Path) -> list[str]:
    """The stripped, non-empty lines of UTF-8 text file ``path`` (a leading byte-order mark is allowed)."""
    text = read_text(path, MAX_LIST_BYTES, kind="a short text file, one name a line")
    if "\x00" in text:
        raise HarnessError(f"{path} holds NUL characters; it should be plain text, one name a line")
    return [line.strip() for line in text.splitlines() if line.strip()]


def is_present(path: Path) -> bool:
    """Whether the optional list file ``path`` is there (then it must be a regular file). A directory, FIFO,
    device or broken link of that name is an error, not "absent": silently falling back to a default (every
    fifth id, numbered classes) would change the data."""
    if not path.exists() and not path.is_symlink():
        return False
    if not path.is_file():
        raise HarnessError(f"{path} is not a regular file; make it a text file, one entry a line, or remove it")
    return True


def read_ids(path: Path) -> list[str]:
    """The image ids listed in ``path`` (:func:`read_lines`): each once, each a plain file name without its
    extension (no directory part, not "." or ".."), so every listed file lies in the data folder."""
    ids = read_lines(path)
    odd = next((i for i in ids if "/" in i or "\\" in i or i in (".", "..")), None)
    if odd is not None:
        raise HarnessError(f"{path} lists {odd[:60]!r}, which is not an image id (a file name without extension "
                           "and without a directory part)")
    repeated = [i for i, count in Counter(ids).items() if count > 1]
    if repeated:
        raise HarnessError(f"{path} names {repeated[0][:60]!r} more than once; list each id once (an image listed "
                           "twice would count twice)")
    return ids
