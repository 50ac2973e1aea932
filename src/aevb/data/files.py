"""Opening and reading files so that every failure becomes a one-line DataError."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from aevb.errors import DataError

# Deflate cannot expand data by more than about 1032x, so a header that claims more
# uncompressed bytes than this per stored byte is lying; we say so before decompressing.
MAX_DEFLATE_RATIO = 1032
_CHUNK = 1 << 22  # 4 MiB per read: bounded memory above the data itself


def open_error(path: Path, exc: OSError) -> DataError:
    """The DataError for an OSError raised while opening or reading `path`."""
    if isinstance(exc, FileNotFoundError):
        return DataError(f"{path}: no such file")
    if isinstance(exc, IsADirectoryError):
        return DataError(f"{path}: is a directory, not a file")
    if isinstance(exc, PermissionError):
        return DataError(f"{path}: permission denied")
    return DataError(f"{path}: cannot read ({exc.strerror or exc})")


def open_binary(path: Path) -> tuple[BinaryIO, int]:
    """Open `path` for binary reading; returns the file and its size in bytes."""
    try:
        f = open(path, "rb")  # noqa: SIM115 -- the caller closes it
    except OSError as exc:
        raise open_error(path, exc) from exc
    size = os.fstat(f.fileno()).st_size
    return f, size


def read_at_most(stream: BinaryIO, n: int) -> bytearray:
    """Up to `n` bytes from `stream`, fewer at end of stream.

    Reads in chunks, so memory follows the bytes that really exist, never `n` itself
    (a lying header or a gzip bomb cannot make us allocate what it claims).
    """
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf
