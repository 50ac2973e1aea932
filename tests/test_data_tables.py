"""User data files (`aevb.data.tables`, `aevb.data.load`): .npy / .npz / .csv round trips, the documented
split, bad arrays, pickles refused, lying headers and every file error with its message."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from aevb.data import Dataset, load_dataset
from aevb.data.formats import read_table
from aevb.data.load import split_rows
from aevb.errors import DataError

# --- user files -----------------------------------------------------------------------------


def _expected_split(x: np.ndarray) -> list[np.ndarray]:
    order = np.random.default_rng(0).permutation(len(x))
    k = max(1, round(0.1 * len(x)))
    return [x[order[: len(x) - 2 * k]], x[order[len(x) - 2 * k : len(x) - k]], x[order[len(x) - k :]]]


def _assert_split(data: Dataset, x: np.ndarray) -> None:
    for got, want in zip((data.train, data.valid, data.test), _expected_split(x)):
        assert torch.equal(got, torch.from_numpy(want.astype(np.float32)))


@pytest.mark.parametrize(
    ("n", "sizes"), [(3, [1, 1, 1]), (4, [2, 1, 1]), (10, [8, 1, 1]), (25, [21, 2, 2]), (1000, [800, 100, 100])]
)
def test_split_sizes(n: int, sizes: list[int]) -> None:
    parts = split_rows(n)
    assert [len(p) for p in parts] == sizes
    assert sorted(np.concatenate(parts).tolist()) == list(range(n))


def test_npy_round_trip(tmp_path: Path) -> None:
    x = np.random.default_rng(3).normal(size=(100, 5))
    np.save(tmp_path / "x.npy", x)
    data = load_dataset(str(tmp_path / "x.npy"))
    assert data.name == str(tmp_path / "x.npy") and data.shape == (5,) and data.train_labels is None
    assert [len(s) for s in (data.train, data.valid, data.test)] == [80, 10, 10]
    _assert_split(data, x)


def test_npz_with_labels_and_uint8_images(tmp_path: Path) -> None:
    x = np.random.default_rng(4).integers(0, 256, size=(30, 4, 6), dtype=np.uint8)
    y = np.arange(30, dtype=np.int32)
    np.savez(tmp_path / "img.npz", X=x, y=y)
    data = load_dataset(tmp_path / "img.npz")
    assert data.is_image and data.shape == (4, 6) and data.in_unit_interval
    _assert_split(data, x / 255)
    for split, labels in zip(
        (data.train, data.valid, data.test), (data.train_labels, data.valid_labels, data.test_labels)
    ):
        assert labels.dtype == torch.int64
        assert torch.equal(split, torch.from_numpy(x[labels.numpy()] / 255).float())


def test_real_adbench_npz(shared_data: Path) -> None:
    x, y = read_table(shared_data / "adbench" / "42_WBC.npz")
    assert x.shape == (223, 9) and y.dtype == np.int64 and int(y.sum()) == 10
    # uint8 features in a 2-D table are values, not pixels: they are kept, not scaled.
    data = load_dataset(str(shared_data / "adbench" / "4_breastw.npz"))
    assert [len(s) for s in (data.train, data.valid, data.test)] == [547, 68, 68]
    assert data.shape == (9,) and data.train.max() == 10 and data.train.min() == 1
    labels = torch.cat([data.train_labels, data.valid_labels, data.test_labels])
    assert int(labels.sum()) == 239  # anomalies, from the data README


def test_compressed_npz_round_trip(tmp_path: Path) -> None:
    x = np.random.default_rng(6).normal(size=(50, 7)).astype(np.float32)
    np.savez_compressed(tmp_path / "c.npz", X=x, y=np.arange(50.0))
    got, labels = read_table(tmp_path / "c.npz")
    assert np.array_equal(got, x) and labels.dtype == np.int64 and labels.tolist() == list(range(50))


@pytest.mark.parametrize("header", [True, False])
def test_csv_round_trip(tmp_path: Path, header: bool) -> None:
    x = np.round(np.random.default_rng(5).normal(size=(20, 3)), 4)
    lines = (["a,b,c"] if header else []) + [",".join(repr(float(v)) for v in row) for row in x]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    data = load_dataset(str(tmp_path / "t.csv"))
    assert data.shape == (3,) and [len(s) for s in (data.train, data.valid, data.test)] == [16, 2, 2]
    _assert_split(data, x)


def test_csv_errors_name_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3\n")
    (tmp_path / "text.csv").write_text("a,b\n1,2\n3,x\n")
    (tmp_path / "nan.csv").write_text("1,2\nnan,3\n4,5\n")
    (tmp_path / "header_only.csv").write_text("a,b\n")
    cases = [
        ("ragged.csv", "line 3 has 1 fields, expected 2"),
        ("text.csv", r"line 3, column 2 \('b'\) is 'x', not a number"),
        ("nan.csv", "contains NaN or inf"),
        ("header_only.csv", "is empty"),
    ]
    for name, message in cases:
        with pytest.raises(DataError, match=message):
            read_table(tmp_path / name)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array([[1.0, np.nan], [0, 0], [0, 0]]), "contains NaN or inf"),
        (np.array([[1.0, 2.0], [np.inf, 0], [0, 0]]), "contains NaN or inf"),
        (np.zeros((0, 4)), "is empty"),
        (np.zeros(5), "must be 2-D"),
        (np.array([["a", "b"]]), "holds text"),
        (np.zeros((2, 2)), "at least 3 are needed"),
    ],
)
def test_bad_arrays(tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(DataError, match=message):
        load_dataset(str(tmp_path / "bad.npy"))


class _Trap:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickles_are_refused_without_running_them(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    trap = np.array([_Trap(marker), 1], dtype=object)
    np.save(tmp_path / "obj.npy", trap, allow_pickle=True)
    np.savez(tmp_path / "obj.npz", X=trap)
    import pickle

    (tmp_path / "raw.npy").write_bytes(pickle.dumps(_Trap(marker)))
    for name in ("obj.npy", "obj.npz"):
        with pytest.raises(DataError, match=r"holds Python objects \(pickle\); aevb never loads pickles"):
            load_dataset(str(tmp_path / name))
    with pytest.raises(DataError, match="is a pickle"):
        load_dataset(str(tmp_path / "raw.npy"))
    assert not marker.exists()


def test_npy_lying_header_fails_fast(tmp_path: Path) -> None:
    np.save(tmp_path / "small.npy", np.zeros((10, 10)))
    raw = (tmp_path / "small.npy").read_bytes()
    liar = raw.replace(b"(10, 10)", b"(1000000000, 9)")  # claims 72 GB
    (tmp_path / "liar.npy").write_bytes(liar)
    start = time.perf_counter()
    with pytest.raises(DataError, match="truncated"):
        read_table(tmp_path / "liar.npy")
    assert time.perf_counter() - start < 1


def test_file_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "nox.npz", features=np.zeros((3, 2)), target=np.zeros(3))
    (tmp_path / "folder.npy").mkdir()
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    cases = [
        (tmp_path / "nox.npz", "has no array 'X' \\(keys: features, target\\)"),
        (tmp_path / "missing.csv", "no such file"),
        (tmp_path / "folder.npy", "is a directory"),
        (tmp_path / "corrupt.npz", "corrupt .npz"),
        (tmp_path / "data.txt", r"unsupported file type '\.txt'; supported: \.npy, \.npz, \.csv"),
    ]
    for path, message in cases:
        with pytest.raises(DataError, match=message):
            read_table(path)
    with pytest.raises(DataError, match=r"unknown dataset 'cifar'; built-in: digits, mnist, .*\.npy"):
        load_dataset("cifar")
