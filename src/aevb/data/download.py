"""Checksummed, atomic downloads: a file appears complete and verified, or not at all."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from aevb.errors import DataError

from ..files import fsync_dir
from .files import open_error

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of the file at `path`, as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise open_error(Path(path), exc) from exc
    return digest.hexdigest()


def fetch(urls: list[str], dest: str | Path, sha256: str, timeout: float = 30) -> Path:
    """Download the first of `urls` that serves bytes with this SHA-256 to `dest`; returns `dest`.

    Each try streams into a temporary file beside `dest`, which replaces `dest` only once its
    checksum matches, so an interrupted or wrong download never leaves a file at `dest`.
    """
    dest = Path(dest)
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]  # deepest first
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{dest.parent}: cannot create folder ({exc.strerror or exc})") from exc
    failures = []
    try:
        for url in urls:
            try:
                _fetch_one(url, dest, sha256.lower(), timeout)
                return dest
            except _Failed as exc:
                failures.append(f"{url}: {' '.join(str(exc).split())}")  # one line, always
    except BaseException:
        _remove_empty(created)
        raise
    _remove_empty(created)
    tried = "; ".join(failures) or "no URL to try"
    raise DataError(f"cannot download {dest.name} ({tried})")


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed download created (deepest first) that are still empty: a failure
    leaves no empty data folder that looks like a download in place."""
    for folder in folders:
        try:
            folder.rmdir()  # only ever removes an empty folder
        except OSError:
            return


class _Failed(Exception):
    """One URL did not give the file; the message says why, for the final error."""


def _fetch_one(url: str, dest: Path, sha256: str, timeout: float) -> None:
    """Stream `url` to a temporary file beside `dest`, verify it, fsync it, move it onto `dest`."""
    try:
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        raise DataError(f"{dest.parent}: cannot write ({exc.strerror or exc})") from exc
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            out.flush()
            os.fsync(out.fileno())  # the bytes are on disk before the name points at them
        if digest.hexdigest() != sha256:
            raise _Failed(f"checksum mismatch (got SHA-256 {digest.hexdigest()[:12]}..., expected {sha256[:12]}...)")
        os.replace(tmp, dest)
    except urllib.error.HTTPError as exc:
        raise _Failed(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise _Failed(str(exc.reason)) from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise _Failed(f"{type(exc).__name__}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)  # gone already after os.replace; removes any failed try
    fsync_dir(dest.parent)
