"""Atomic file writes: a temp file in the same folder, fsync, then rename over the target.

A reader never sees a half-written file, and a failure leaves the previous file untouched.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import AevbError


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_path) and move the result onto `path` atomically; returns `path`."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise AevbError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as e:
        raise AevbError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        tmp_path.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable; where folders cannot be opened, only durability is lost."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_table(path: str | Path, columns: dict[str, Any]) -> Path:
    """Write named 1-D/2-D arrays atomically: .npz (one key each), .npy (side by side), .csv (header).

    A 2-D array named "mu" becomes csv columns mu1, mu2, ...
    """
    import numpy as np

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return atomic_write(path, lambda p: _savez(p, columns))
    blocks = [np.asarray(v, dtype=np.float64).reshape(len(v), -1) for v in columns.values()]
    table = np.concatenate(blocks, axis=1)
    if suffix == ".npy":
        return atomic_write(path, lambda p: _save_npy(p, table.astype(np.float32)))
    if suffix == ".csv":
        names = []
        for name, v in columns.items():
            width = np.asarray(v).reshape(len(v), -1).shape[1]
            names += [name] if np.asarray(v).ndim == 1 else [f"{name}{i + 1}" for i in range(width)]
        return atomic_write(
            path, lambda p: np.savetxt(p, table, delimiter=",", header=",".join(names), comments="", fmt="%.9g")
        )
    raise AevbError(f"cannot write {path}: the suffix must be .npz, .npy or .csv")


def _savez(p: Path, columns: dict) -> None:
    import numpy as np

    with open(p, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in columns.items()})


def _save_npy(p: Path, a) -> None:
    import numpy as np

    with open(p, "wb") as f:
        np.save(f, a, allow_pickle=False)
