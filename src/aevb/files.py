"""Atomic file writes: a temp file in the same folder, fsync, then rename over the target.

A reader never sees a half-written file, and a failure leaves the previous file untouched.
"""

from __future__ import annotations

import functools
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import AevbError


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_path) and move the result onto `path` atomically; returns `path`.

    The new file gets the mode of the file it replaces, else the usual 0666 less the umask.
    A full disk or a read-only folder raises AevbError and leaves the previous file as it was.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise AevbError(f"cannot write {path}: {e.strerror or e}") from None
    tmp_path = Path(tmp)
    try:
        try:
            os.fchmod(fd, stat.S_IMODE(os.stat(path).st_mode) if path.exists() else 0o666 & ~_umask())
        finally:
            os.close(fd)
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as e:
        raise AevbError(f"cannot write {path}: {e.strerror or e}") from None
    except Exception as e:
        if type(e).__name__ != "SafetensorError":  # safetensors reports its I/O errors with its own type
            raise
        reason = str(e).split("I/O error: ")[-1].split(" (os error")[0]
        raise AevbError(f"cannot write {path}: {reason}") from None
    finally:
        tmp_path.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


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


def inside(base: str | Path, name: str, what: str = "run name") -> Path:
    """`base/name`, refusing a name that would leave `base`: separators, `..`, absolute paths,
    or a symlink (at any depth) that resolves outside `base`. For names that come from files."""
    if not isinstance(name, str) or not name or name in (".", ".."):
        raise AevbError(f"{what} {name!r} is not a valid name")
    if "/" in name or "\\" in name or "\0" in name or Path(name).is_absolute() or Path(name).drive:
        raise AevbError(f"{what} {name!r} must be a plain name, not a path (no '/', '\\\\', '..' or absolute paths)")
    base = Path(base)
    target = base / name
    root = base.resolve()
    if not target.resolve().is_relative_to(root):  # a symlink placed in base that points out of it
        raise AevbError(f"{what} {name!r}: {target} leads outside {base} (a symlink?); refusing to write there")
    return target


class RunLock:
    """An exclusive lock on a run directory (`RUN/.lock`, flock), held while a trainer writes it.

    The kernel drops it when the process ends, however it ends (SIGKILL included), so a lock
    is never stale; a second trainer pointed at the same directory gets a clear AevbError.
    """

    NAME = ".lock"

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / self.NAME
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, as before
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise AevbError(f"cannot write {self.path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise AevbError(
                f"{self.path.parent} is being trained by another aevb process{who}; "
                "wait for it to finish or choose another --out"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError as e:
            os.close(fd)
            raise AevbError(f"cannot write {self.path}: {e.strerror or e}") from None
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock; the file stays (removing it would race)
            self.fd = None


def remove_stale_temps(folder: Path, names: list[str]) -> None:
    """Delete the temp files that `atomic_write` of `names` left when a process was killed mid-write.

    Call it only while holding the folder's RunLock: another writer's temp files are not stale.
    """
    for p in (t for name in names for t in folder.glob(f".{name}.*.tmp")):
        try:
            p.unlink()
        except OSError:
            pass
