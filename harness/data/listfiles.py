"""Reading the small text files of a data folder (``classes.txt``, ``train.txt``, ``val.txt``): UTF-8, one entry
a line, blank lines skipped; anything else is one HarnessError naming the file."""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError

MAX_LIST_BYTES = 16 * 1024 * 1024  # far above any real list; keeps a wrong file from being read whole


def read_lines(path: Path) -> list[str]:
    """The stripped, non-empty lines of UTF-8 text file ``path`` (a leading byte-order mark is allowed)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_LIST_BYTES + 1)
    except OSError as e:
        raise HarnessError(f"cannot read {path}: {e.strerror or e}") from None
    if len(raw) > MAX_LIST_BYTES:
        raise HarnessError(f"{path} is larger than {MAX_LIST_BYTES // (1024 * 1024)} MiB; it should list one "
                           "name a line")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise HarnessError(f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                           "save it as UTF-8") from None
    if "\x00" in text:
        raise HarnessError(f"{path} holds NUL characters; it should be plain text, one name a line")
    return [line.strip() for line in text.splitlines() if line.strip()]
