"""Readers of the original formats (`aevb.data.formats`): IDX, binarized-MNIST text, the Frey Face MATLAB
file; round trips, the real files, and every corruption with its message."""

from __future__ import annotations

import gzip
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from aevb.data.formats import read_amat, read_frey, read_idx
from aevb.errors import DataError
from published import LABELS_GZ, MNIST_TEST_COUNTS

# --- IDX ------------------------------------------------------------------------------------


def _idx(array: np.ndarray, type_byte: int = 0x08, dims: tuple[int, ...] | None = None) -> bytes:
    dims = array.shape if dims is None else dims
    header = struct.pack(">HBB", 0, type_byte, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    return header + array.tobytes()


def test_idx_round_trip_plain_and_gzip(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(_idx(images))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(_idx(images)))
    values = np.array([-3, 7, 300], dtype=">i2")
    (tmp_path / "s.idx").write_bytes(_idx(values, type_byte=0x0B))
    assert np.array_equal(read_idx(tmp_path / "a.idx"), images)
    assert np.array_equal(read_idx(tmp_path / "a.idx.gz"), images)
    assert read_idx(tmp_path / "s.idx").tolist() == [-3, 7, 300]


def test_idx_real_labels_file(shared_data: Path) -> None:
    labels = read_idx(shared_data / "mnist" / LABELS_GZ)
    assert labels.dtype == np.uint8 and np.bincount(labels).tolist() == MNIST_TEST_COUNTS


def test_idx_truncated_gzip(shared_data: Path, tmp_path: Path) -> None:
    raw = (shared_data / "mnist" / LABELS_GZ).read_bytes()
    (tmp_path / "cut.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"cut\.gz.*truncated"):
        read_idx(tmp_path / "cut.gz")


def test_idx_truncated_plain_and_too_long(tmp_path: Path) -> None:
    raw = _idx(np.zeros((5, 2, 2), np.uint8))
    (tmp_path / "cut.idx").write_bytes(raw[:-1])
    (tmp_path / "long.idx").write_bytes(raw + b"\0")
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "cut.idx")
    with pytest.raises(DataError, match="more data than its header declares"):
        read_idx(tmp_path / "long.idx")


def test_idx_corrupt_gzip(shared_data: Path, tmp_path: Path) -> None:
    raw = bytearray((shared_data / "mnist" / LABELS_GZ).read_bytes())
    raw[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    (tmp_path / "crc.gz").write_bytes(bytes(raw))
    (tmp_path / "junk.gz").write_bytes(b"\x1f\x8b" + b"junk" * 100)
    for name in ("crc.gz", "junk.gz"):
        with pytest.raises(DataError, match=f"{name}.*corrupt gzip"):
            read_idx(tmp_path / name)


def test_idx_bad_magic(tmp_path: Path) -> None:
    (tmp_path / "bad.idx").write_bytes(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(DataError, match=r"bad\.idx: bad magic 0x12345678"):
        read_idx(tmp_path / "bad.idx")


@pytest.mark.parametrize("compress", [False, True])
def test_idx_lying_header_fails_fast_without_allocating(tmp_path: Path, compress: bool) -> None:
    raw = _idx(np.zeros(100, np.uint8), dims=(10**9, 28, 28))  # claims 784 GB
    (tmp_path / "liar").write_bytes(gzip.compress(raw) if compress else raw)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(DataError, match="truncated"):
            read_idx(tmp_path / "liar")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1 and peak < 1 << 20


def test_idx_gzip_bomb_is_read_with_a_bound(tmp_path: Path) -> None:
    header = _idx(np.zeros(0, np.uint8), dims=(1, 28, 28))  # declares 784 bytes...
    (tmp_path / "bomb.gz").write_bytes(gzip.compress(header + bytes(50 << 20), compresslevel=1))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="more data than its header declares"):
            read_idx(tmp_path / "bomb.gz")  # ...then inflates to 50 MB
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20


# --- binarized-MNIST text -------------------------------------------------------------------


def _amat_line(values: np.ndarray) -> str:
    return " ".join(str(v) for v in values)


def test_amat_round_trip(tmp_path: Path) -> None:
    rows = np.random.default_rng(1).integers(0, 2, size=(3, 784), dtype=np.uint8)
    text = "".join(_amat_line(r) + "\n" for r in rows)
    (tmp_path / "a.amat").write_text(text)
    (tmp_path / "crlf.amat").write_bytes(text.replace("\n", "\r\n").encode()[:-2])  # no final newline
    assert np.array_equal(read_amat(tmp_path / "a.amat"), rows)
    assert np.array_equal(read_amat(tmp_path / "crlf.amat"), rows)


def test_amat_errors_name_the_line(tmp_path: Path) -> None:
    good = _amat_line(np.zeros(784, np.uint8))
    (tmp_path / "ragged.amat").write_text(f"{good}\n{good[:-2]}\n")
    (tmp_path / "value.amat").write_text(f"{good}\n{good}\n2{good[1:]}\n")
    (tmp_path / "empty.amat").write_text("\n")
    with pytest.raises(DataError, match="line 2 has 783 values, expected 784"):
        read_amat(tmp_path / "ragged.amat")
    with pytest.raises(DataError, match="line 3, value 1 is '2', expected 0 or 1"):
        read_amat(tmp_path / "value.amat")
    with pytest.raises(DataError, match="is empty"):
        read_amat(tmp_path / "empty.amat")


# --- Frey Face MATLAB file ------------------------------------------------------------------


def test_frey_round_trip(tmp_path: Path) -> None:
    ff = np.random.default_rng(2).integers(0, 256, size=(560, 3), dtype=np.uint8)
    scipy.io.savemat(tmp_path / "f.mat", {"ff": ff})
    frames = read_frey(tmp_path / "f.mat")
    assert frames.shape == (3, 28, 20) and np.array_equal(frames[2].reshape(-1), ff[:, 2])


def test_frey_corrupt_and_truncated(shared_data: Path, tmp_path: Path) -> None:
    raw = (shared_data / "frey-face" / "frey_rawface.mat").read_bytes()
    (tmp_path / "cut.mat").write_bytes(raw[:500_000])
    (tmp_path / "junk.mat").write_bytes(b"junk" * 1000)
    scipy.io.savemat(tmp_path / "other.mat", {"X": np.zeros((2, 2))})
    for name, message in [
        ("cut.mat", "may be corrupt"),
        ("junk.mat", "may be corrupt"),
        ("other.mat", "has no variable 'ff'"),
    ]:
        with pytest.raises(DataError, match=f"{name}: .*{message}"):
            read_frey(tmp_path / name)
    with pytest.raises(DataError, match="is a directory"):
        read_frey(tmp_path)
