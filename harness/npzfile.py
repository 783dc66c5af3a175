"""Read named arrays from an .npz that may be damaged or forged, without a traceback or an unbounded allocation.

:func:`load_arrays` refuses, as one HarnessError, whatever numpy or zipfile would raise on (a zero-byte or
truncated file, not a zip, a bad CRC, an encrypted or exotic member, pickled objects) and, before loading, an
archive that lacks a name, holds more than ``max_bytes`` uncompressed, or has an array header whose shape claims
more bytes than its member holds (numpy would allocate the claimed size first).
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.errors import HarnessError

READ_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error, NotImplementedError,
               RuntimeError, MemoryError)


def load_arrays(path: str | os.PathLike, names: Sequence[str], max_bytes: int, what: str = "",
                hint: str = "") -> dict[str, np.ndarray]:
    """The arrays ``names`` of the .npz at ``path``; HarnessError ``f"{what}{path} ...{hint}"`` otherwise."""
    path = Path(path)
    if not path.is_file():  # missing, or a FIFO or device that would block
        raise HarnessError(f"{what}{path} does not exist or is not a regular file{hint}")
    try:
        with zipfile.ZipFile(path) as archive:
            _check_sizes(archive, names, max_bytes, f"{what}{path}", hint)
        with np.load(path, allow_pickle=False) as z:
            return {name: z[name] for name in names}
    except READ_ERRORS as e:
        raise HarnessError(f"{what}{path} cannot be read ({type(e).__name__}: {e}){hint}") from None


def _check_sizes(archive: zipfile.ZipFile, names: Sequence[str], max_bytes: int, where: str, hint: str) -> None:
    total = 0
    for name in names:
        try:
            info = archive.getinfo(f"{name}.npy")
        except KeyError:
            raise HarnessError(f"{where} lacks the array {name!r}{hint}") from None
        total += info.file_size
        if total > max_bytes:
            raise HarnessError(f"{where} holds more than {max_bytes >> 20} MiB of arrays{hint}")
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise HarnessError(f"{where}: {name} is an .npy of version {version}, not one numpy.savez writes{hint}")
        if math.prod(shape) * dtype.itemsize > info.file_size:
            raise HarnessError(f"{where}: {name} claims shape {shape}, more than its {info.file_size} bytes{hint}")
