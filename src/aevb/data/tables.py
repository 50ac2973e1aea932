"""Reader of user data files (.npy, .npz, .csv) into a checked feature array and labels.

Pickles are never loaded: .npy / .npz headers are inspected first, and a file whose
array holds Python objects is refused before numpy sees its payload.
"""

from __future__ import annotations

import csv
import math
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from aevb.errors import DataError

from .files import MAX_DEFLATE_RATIO, open_binary, open_error

TABLE_SUFFIXES = (".npy", ".npz", ".csv")
_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float
_PICKLE = "holds Python objects (pickle); aevb never loads pickles"


def read_table(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Features and optional labels from a user file: `(X, y)`.

    X is `(n, d)` numeric, or `(n, H, W)` images from .npy / .npz, in the file's dtype;
    y is `(n,)` int64 (the `y` key of a .npz) or None. X is finite with n >= 1.
    """
    path = Path(path)
    readers = {".npy": _read_npy, ".npz": _read_npz, ".csv": _read_csv}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; supported: {', '.join(TABLE_SUFFIXES)}")
    x, y = reader(path)
    return check_features(x, path), (None if y is None else check_labels(y, len(x), path))


def _read_npy(path: Path) -> tuple[np.ndarray, None]:
    f, size = open_binary(path)
    with f:
        try:
            _check_npy_header(f, size, str(path))
            f.seek(0)
            return np.lib.format.read_array(f, allow_pickle=False), None
        except OSError as exc:
            raise open_error(path, exc) from exc
        except ValueError as exc:
            raise DataError(f"{path}: corrupt .npy file ({exc})") from exc


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    f, size = open_binary(path)
    with f:
        try:
            with zipfile.ZipFile(f) as archive:
                names = archive.namelist()
                if "X.npy" not in names:
                    keys = [n.removesuffix(".npy") for n in names]
                    raise DataError(
                        f"{path}: has no array 'X' (keys: {', '.join(keys) or 'none'}); "
                        "save features as X (and labels as y)"
                    )
                x = _read_npz_member(archive, "X.npy", size, path)
                y = _read_npz_member(archive, "y.npy", size, path) if "y.npy" in names else None
        except DataError:
            raise
        except OSError as exc:
            raise open_error(path, exc) from exc
        except Exception as exc:  # zipfile's grab-bag: BadZipFile, NotImplementedError, RuntimeError, zlib.error...
            raise DataError(f"{path}: corrupt .npz file ({type(exc).__name__}: {exc})") from exc
    return x, y


def _read_npz_member(archive: zipfile.ZipFile, name: str, size: int, path: Path) -> np.ndarray:
    """One array of an open .npz, after checking its header against the sizes on disk."""
    info = archive.getinfo(name)
    # The zip directory's uncompressed size is only a claim; bound it by the bytes stored.
    stored = min(info.compress_size, size)
    limit = stored if info.compress_type == zipfile.ZIP_STORED else stored * MAX_DEFLATE_RATIO
    if info.file_size > limit:
        raise DataError(f"{path}: corrupt .npz file ({name} claims {info.file_size:,} bytes from {stored:,} stored)")
    with archive.open(info) as member:
        _check_npy_header(member, info.file_size, f"{path} ({name})")
    with archive.open(info) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def _check_npy_header(f: BinaryIO, size: int, where: str) -> None:
    """Refuse object arrays and headers that declare more data than `size` bytes hold."""
    start = f.read(6)
    if start[:1] == b"\x80":  # the first byte of every pickle since protocol 2
        raise DataError(f"{where}: is a pickle, not a .npy array; aevb never loads pickles")
    if start != b"\x93NUMPY":
        raise DataError(f"{where}: not a .npy array (bad magic {start!r})")
    version = tuple(f.read(2))
    header_readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in header_readers:
        raise DataError(f"{where}: unsupported .npy format version {version}")
    try:
        shape, _, dtype = header_readers[version](f)
    except Exception as exc:  # numpy parses the header as a Python literal: ValueError, SyntaxError, ...
        raise DataError(f"{where}: corrupt .npy header ({type(exc).__name__})") from exc
    if dtype.hasobject:
        raise DataError(f"{where}: {_PICKLE}")
    header_bytes = f.tell()  # the caller handed us `f` at the start of the array
    want = math.prod(shape) * dtype.itemsize
    if want > size - header_bytes:
        raise DataError(
            f"{where}: truncated: header declares shape {shape} {dtype} "
            f"({want:,} bytes) but only {max(size - header_bytes, 0):,} bytes follow"
        )


def _read_csv(path: Path) -> tuple[np.ndarray, None]:
    """A numeric CSV; the first row is a header when any of its fields is not a number."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            try:
                return _parse_csv(reader, path), None
            except csv.Error as exc:
                raise DataError(f"{path}: line {reader.line_num}: bad CSV ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise open_error(path, exc) from exc


def _parse_csv(reader, path: Path) -> np.ndarray:
    """`(n, d)` float64 from csv rows, naming the line and column of the first bad field."""
    header: list[str] | None = None
    rows: list[list[float]] = []
    width = 0
    for row in reader:
        if not any(field.strip() for field in row):
            continue  # blank lines separate nothing in a table
        if header is None and not rows:
            width = len(row)
            try:
                rows.append([float(v) for v in row])
            except ValueError:
                header = row
            continue
        if len(row) != width:
            raise DataError(
                f"{path}: line {reader.line_num} has {len(row)} fields, expected {width} like the first row"
            )
        try:
            rows.append([float(v) for v in row])
        except ValueError:
            column = next(i for i, v in enumerate(row) if not _is_number(v))
            name = f" ({header[column].strip()!r})" if header else ""
            raise DataError(
                f"{path}: line {reader.line_num}, column {column + 1}{name} is {row[column][:30]!r}, not a number"
            ) from None
    return np.array(rows, dtype=np.float64).reshape(len(rows), width)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_features(x: np.ndarray, path: Path | str) -> np.ndarray:
    """`x` itself, once it is known to be numeric, 2-D or 3-D, non-empty and finite."""
    if x.dtype.kind not in _NUMERIC_KINDS:
        kinds = {"c": "complex numbers", "U": "text", "S": "bytes", "V": "structured records"}
        raise DataError(f"{path}: holds {kinds.get(x.dtype.kind, x.dtype)}, not real numbers")
    if x.ndim not in (2, 3, 4):
        raise DataError(
            f"{path}: features must be 2-D (rows, features), 3-D (images, H, W) or 4-D colour images "
            f"(images, C, H, W) / (images, H, W, C), got shape {x.shape}"
        )
    if len(x) == 0:
        raise DataError(f"{path}: is empty (no rows)")
    if math.prod(x.shape[1:]) == 0:
        raise DataError(f"{path}: has no features (shape {x.shape})")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        row = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0])
        raise DataError(f"{path}: contains NaN or inf (first in row {row})")
    return x


def check_labels(y: np.ndarray, n: int, path: Path | str) -> np.ndarray:
    """`y` as `(n,)` int64, once it is known to hold one whole number per row."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # (n, 1) columns, as MATLAB-born files have
    if y.dtype.kind not in _NUMERIC_KINDS or y.shape != (n,):
        raise DataError(f"{path}: labels 'y' must be {n} numbers (one per row of X), got {y.dtype} {y.shape}")
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise DataError(f"{path}: labels 'y' must be whole numbers")
    return y.astype(np.int64)
