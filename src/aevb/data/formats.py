"""Readers of the built-in datasets' original formats (IDX, .amat, MATLAB), as numpy arrays.

`read_table` (user files) lives in tables.py and is re-exported here so that every
reader is found in one place.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from aevb.errors import DataError

from .files import MAX_DEFLATE_RATIO, open_binary, open_error, read_at_most
from .tables import read_table

__all__ = ["read_idx", "read_amat", "read_frey", "read_table"]

# IDX type byte -> element type; multi-byte types are big-endian on disk.
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"

AMAT_VALUES = 784  # one 28x28 binarized digit per line
_AMAT_LINE = 2 * AMAT_VALUES  # "0 1 ... 1\n": a digit and a space or newline per value

FREY_SHAPE = (28, 20)
_FREY_MAX_BYTES = 64 << 20  # the real file is 1.1 MB; anything far larger is not it


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (gzip-compressed or plain) as an array of the shape its header declares.

    MNIST images give `(n, 28, 28)` uint8, labels `(n,)` uint8. The payload must be exactly
    the size the header declares; it is read with a bound, so a lying header costs nothing.
    """
    path = Path(path)
    f, size = open_binary(path)
    with f:
        gzipped = f.read(2) == _GZIP_MAGIC
        f.seek(0)
        stream = gzip.GzipFile(fileobj=f, mode="rb") if gzipped else f
        try:
            header_bytes, dtype, dims = _idx_header(stream, path)
            want = math.prod(dims) * dtype.itemsize
            # Plain: the rest of the file is the payload. Gzip: a ratio no deflate stream reaches.
            room = size * MAX_DEFLATE_RATIO if gzipped else size - header_bytes
            if want > room:
                raise DataError(
                    f"{path}: truncated: header declares shape {dims} ({want:,} bytes) "
                    f"but the file is only {size:,} bytes"
                )
            payload = read_at_most(stream, want + 1)
        except EOFError as exc:
            raise DataError(f"{path}: truncated gzip stream ({exc})") from exc
        except (OSError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt gzip data ({exc})") from exc
    if len(payload) < want:
        raise DataError(
            f"{path}: truncated: header declares shape {dims} ({want:,} bytes) "
            f"but only {len(payload):,} bytes follow it"
        )
    if len(payload) > want:
        raise DataError(f"{path}: more data than its header declares (shape {dims})")
    array = np.frombuffer(payload, dtype=dtype).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _idx_header(stream, path: Path) -> tuple[int, np.dtype, tuple[int, ...]]:
    """Parse the IDX magic and dimensions; returns (header bytes, element dtype, dims)."""
    magic = stream.read(4)
    if len(magic) < 4:
        raise DataError(f"{path}: truncated: no IDX header")
    zero, type_byte, ndim = struct.unpack(">HBB", magic)
    if zero != 0 or type_byte not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path}: bad magic 0x{magic.hex()} (not an IDX file; expected "
            "0x00000803 for images or 0x00000801 for labels)"
        )
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(f"{path}: truncated: IDX header ends early")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    return 4 + 4 * ndim, np.dtype(_IDX_DTYPES[type_byte]), dims


def read_amat(path: str | Path) -> np.ndarray:
    """A binarized-MNIST `.amat` text file as `(n, 784)` uint8 of 0/1, one row per line.

    The canonical layout ("0 1 ... 0\\n", 1568 bytes a line) is parsed in bulk; anything
    else goes through a line-by-line parse that names the first bad line.
    """
    path = Path(path)
    f, _ = open_binary(path)
    try:
        with f:
            raw = f.read()
    except OSError as exc:
        raise open_error(path, exc) from exc
    values = _amat_fast(raw)
    if values is None:
        values = _amat_slow(raw, path)
    if len(values) == 0:
        raise DataError(f"{path}: is empty (no images)")
    return values


def _amat_fast(raw: bytes) -> np.ndarray | None:
    """`(n, 784)` uint8 when `raw` is exactly n canonical lines, else None."""
    if not raw or len(raw) % _AMAT_LINE:
        return None
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _AMAT_LINE)
    digits, gaps = rows[:, 0::2], rows[:, 1::2]  # (n, 784) each
    if not ((gaps[:, :-1] == ord(" ")).all() and (gaps[:, -1] == ord("\n")).all()):
        return None
    values = digits - np.uint8(ord("0"))  # wraps below '0', so one comparison checks both ends
    return values if (values <= 1).all() else None


def _amat_slow(raw: bytes, path: Path) -> np.ndarray:
    """Any-whitespace parse of `raw` that reports the first bad line by number."""
    rows = []
    for number, line in enumerate(raw.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue  # blank lines (a trailing one, say) hold no image
        if len(tokens) != AMAT_VALUES:
            raise DataError(
                f"{path}: line {number} has {len(tokens)} values, expected {AMAT_VALUES} (one 28x28 image per line)"
            )
        if not set(tokens) <= {b"0", b"1"}:
            column, bad = next((i, t) for i, t in enumerate(tokens, 1) if t not in (b"0", b"1"))
            shown = bad.decode("utf-8", "replace")[:20]
            raise DataError(f"{path}: line {number}, value {column} is {shown!r}, expected 0 or 1")
        rows.append(b"".join(tokens))
    flat = np.frombuffer(b"".join(rows), dtype=np.uint8) - np.uint8(ord("0"))
    return flat.reshape(-1, AMAT_VALUES)


def read_frey(path: str | Path) -> np.ndarray:
    """Frey Face `frey_rawface.mat` as `(n, 28, 20)` uint8 frames in video order (n = 1965)."""
    from scipy.io import loadmat  # scipy is slow to import; only this reader needs it

    path = Path(path)
    f, size = open_binary(path)
    with f:
        if size > _FREY_MAX_BYTES:
            raise DataError(f"{path}: is {size:,} bytes, far larger than the 1.1 MB Frey Face file")
        try:
            raw = f.read()
        except OSError as exc:
            raise open_error(path, exc) from exc
    try:
        # The headers first: a variable may be zlib-compressed, so its declared shape is checked
        # against what the file's bytes can hold before anything of that size is allocated.
        from scipy.io import whosmat

        declared = {name: shape for name, shape, _ in whosmat(io.BytesIO(raw))}
        if "ff" in declared and math.prod(declared["ff"]) > len(raw) * MAX_DEFLATE_RATIO:
            raise DataError(
                f"{path}: variable 'ff' declares shape {declared['ff']}, more than its {len(raw):,} bytes can hold"
            )
        # From memory, so a lying element size can only run into the end of the bytes we have.
        ff = loadmat(io.BytesIO(raw), variable_names=["ff"]).get("ff")
    except DataError:
        raise
    except Exception as exc:  # scipy raises a grab-bag (ValueError, OSError, IndexError, ...)
        raise DataError(f"{path}: not a readable MATLAB file, may be corrupt ({type(exc).__name__}: {exc})") from exc
    rows = math.prod(FREY_SHAPE)
    if ff is None:
        raise DataError(f"{path}: has no variable 'ff' (not the Frey Face file)")
    if ff.ndim != 2 or ff.shape[0] != rows or ff.dtype != np.uint8:
        raise DataError(f"{path}: variable 'ff' is {ff.dtype} {ff.shape}, expected uint8 ({rows}, n)")
    return np.ascontiguousarray(ff.T).reshape(-1, *FREY_SHAPE)
