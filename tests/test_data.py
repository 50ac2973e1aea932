"""The data layer against ground truth: published counts, checksums, exact splits, errors."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import http.server
import shutil
import struct
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from aevb.data import BUILTIN, Dataset, default_data_dir, load_dataset
from aevb.data.download import fetch, sha256_file
from aevb.data.formats import read_amat, read_frey, read_idx, read_table
from aevb.data.load import split_rows
from aevb.errors import DataError

# Ground truth from the data README (class counts of the published files).
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
LABELS_GZ = "t10k-labels-idx1-ubyte.gz"
LABELS_SHA = "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"


# --- built-in datasets, read from the real files ------------------------------------------


@pytest.fixture(scope="module")
def mnist(shared_data: Path) -> Dataset:
    return load_dataset("mnist", data_dir=shared_data, download=False)


@pytest.fixture(scope="module")
def binarized(shared_data: Path) -> Dataset:
    return load_dataset("binarized-mnist", data_dir=shared_data, download=False)


def test_mnist_splits_and_label_counts(mnist: Dataset) -> None:
    assert mnist.shape == (28, 28) and mnist.is_image and mnist.dim == 784
    assert [len(x) for x in (mnist.train, mnist.valid, mnist.test)] == [50000, 10000, 10000]
    assert mnist.train.dtype == torch.float32 and mnist.train_labels.dtype == torch.int64
    train_file = torch.cat([mnist.train_labels, mnist.valid_labels])  # the 60,000 in file order
    assert torch.bincount(train_file).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(mnist.test_labels).tolist() == MNIST_TEST_COUNTS
    assert mnist.train_labels[:5].tolist() == [5, 0, 4, 1, 9]  # the famous first digits
    assert mnist.test_labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_mnist_pixels_are_bytes_over_255(mnist: Dataset) -> None:
    assert mnist.in_unit_interval and not mnist.is_binary
    for x in (mnist.train, mnist.valid, mnist.test):
        assert x.min() == 0 and x.max() == 1
        assert torch.equal(x * 255, (x * 255).round())
    assert abs(mnist.train.mean().item() - 0.1310) < 5e-4  # MNIST's well-known mean intensity


def test_fashion_mnist_has_balanced_classes(shared_data: Path) -> None:
    data = load_dataset("fashion-mnist", data_dir=shared_data, download=False)
    assert [len(x) for x in (data.train, data.valid, data.test)] == [50000, 10000, 10000]
    train_counts = torch.bincount(data.train_labels, minlength=10)
    valid_counts = torch.bincount(data.valid_labels, minlength=10)
    assert (train_counts + valid_counts).tolist() == [6000] * 10
    assert torch.bincount(data.test_labels).tolist() == [1000] * 10
    assert data.in_unit_interval and data.train.max() == 1


def test_binarized_mnist_matches_published_means(binarized: Dataset) -> None:
    assert binarized.shape == (28, 28)
    assert [len(x) for x in (binarized.train, binarized.valid, binarized.test)] == [50000, 10000, 10000]
    assert binarized.train_labels is None and binarized.test_labels is None
    assert binarized.is_binary and binarized.in_unit_interval
    means = [x.mean().item() for x in (binarized.train, binarized.valid, binarized.test)]
    assert means == pytest.approx([0.1306, 0.1311, 0.1325], abs=5e-4)


def test_frey_face_is_split_in_video_order(shared_data: Path) -> None:
    data = load_dataset("frey-face", data_dir=shared_data, download=False)
    assert data.shape == (28, 20) and data.dim == 560 and data.train_labels is None
    assert [len(x) for x in (data.train, data.valid, data.test)] == [1565, 200, 200]
    frames = torch.cat([data.train, data.valid, data.test])
    assert frames.min().item() == pytest.approx(8 / 255) and frames.max().item() == pytest.approx(238 / 255)
    ff = scipy.io.loadmat(shared_data / "frey-face" / "frey_rawface.mat")["ff"]  # (560, 1965)
    assert torch.equal(frames[1234].reshape(-1) * 255, torch.from_numpy(ff[:, 1234]).float())


def test_digits_uses_the_documented_permutation() -> None:
    from sklearn.datasets import load_digits

    data = load_dataset("digits")
    assert data.shape == (8, 8)
    assert [len(x) for x in (data.train, data.valid, data.test)] == [1297, 200, 300]
    digits = load_digits()
    order = np.random.default_rng(0).permutation(1797)
    expected = torch.from_numpy(digits.images[order] / 16).float()
    assert torch.equal(torch.cat([data.train, data.valid, data.test]), expected)
    labels = torch.cat([data.train_labels, data.valid_labels, data.test_labels])
    assert labels.tolist() == digits.target[order].tolist()
    assert data.train.min() == 0 and data.train.max() == 1


def test_builtin_checksums_match_the_real_files(shared_data: Path) -> None:
    for spec in BUILTIN.values():
        for file in spec.files:
            assert sha256_file(shared_data / spec.folder / file.name) == file.sha256, file.name
            assert file.urls and all(url.endswith(file.name) for url in file.urls)
    assert BUILTIN["mnist"].files[0].urls[0].startswith("https://ossci-datasets.s3.amazonaws.com/mnist/")
    assert "1,565" in BUILTIN["frey-face"].split_rule


def test_default_data_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AEVB_DATA_DIR", str(tmp_path / "d"))
    assert default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("AEVB_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_data_dir() == tmp_path / "cache" / "aevb"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_data_dir() == Path.home() / ".cache" / "aevb"


def test_dataset_properties() -> None:
    half = torch.full((4, 3), 0.5)
    data = Dataset("t", (3,), train=half, valid=half[:1], test=half[:1] * 4)
    assert data.dim == 3 and not data.is_image
    assert not data.is_binary and not data.in_unit_interval
    with pytest.raises(ValueError):
        Dataset("t", (2,), train=half, valid=half, test=half)


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


# --- download -------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture()
def server(tmp_path: Path, shared_data: Path):
    """A local HTTP server over a folder holding copies of two small real files; yields its URL."""
    root = tmp_path / "www"
    root.mkdir()
    shutil.copy(shared_data / "mnist" / LABELS_GZ, root)
    shutil.copy(shared_data / "frey-face" / "frey_rawface.mat", root)
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_writes_the_verified_file(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "out" / LABELS_GZ
    # The first mirror is missing the file (404); the second serves it.
    assert fetch([server + "nope.gz", server + LABELS_GZ], dest, LABELS_SHA, timeout=5) == dest
    assert sha256_file(dest) == LABELS_SHA
    assert np.bincount(read_idx(dest)).tolist() == MNIST_TEST_COUNTS
    assert sorted(p.name for p in dest.parent.iterdir()) == [LABELS_GZ]


def test_fetch_wrong_checksum_leaves_nothing(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "out" / LABELS_GZ
    with pytest.raises(DataError, match=f"cannot download {LABELS_GZ} .*checksum mismatch"):
        fetch([server + LABELS_GZ], dest, "0" * 64, timeout=5)
    assert not dest.parent.exists()  # the folder the download made is gone too


def test_fetch_unreachable(tmp_path: Path) -> None:
    dest = tmp_path / "x.gz"
    with pytest.raises(DataError, match=r"cannot download x\.gz \(http://127\.0\.0\.1:1/x\.gz: "):
        fetch(["http://127.0.0.1:1/x.gz"], dest, LABELS_SHA, timeout=2)
    assert list(tmp_path.iterdir()) == []


def _with_urls(monkeypatch: pytest.MonkeyPatch, name: str, base: str) -> None:
    """Point a built-in dataset's files at `base` instead of the internet."""
    spec = BUILTIN[name]
    files = tuple(dataclasses.replace(f, urls=(base + f.name,)) for f in spec.files)
    monkeypatch.setitem(BUILTIN, name, dataclasses.replace(spec, files=files))


def test_builtin_is_downloaded_when_missing(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _with_urls(monkeypatch, "frey-face", server)
    data = load_dataset("frey-face", data_dir=tmp_path / "cache")
    assert [len(x) for x in (data.train, data.valid, data.test)] == [1565, 200, 200]
    assert (tmp_path / "cache" / "frey-face" / "frey_rawface.mat").is_file()


def test_offline_error_names_files_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _with_urls(monkeypatch, "mnist", "http://127.0.0.1:1/")
    with pytest.raises(DataError) as caught:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("mnist: cannot download ")
    names = [f.name for f in BUILTIN["mnist"].files]
    assert f"place {', '.join(names)} in {tmp_path / 'mnist'}/ (see README: Datasets)" in message
    assert list(tmp_path.iterdir()) == []  # not even the folder it would have made
    with pytest.raises(DataError, match="download is off; place train-images"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_corrupt_builtin_file_is_named(shared_data: Path, tmp_path: Path) -> None:
    shutil.copytree(shared_data / "frey-face", tmp_path / "frey-face")
    path = tmp_path / "frey-face" / "frey_rawface.mat"
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:400_000])
    with pytest.raises(DataError, match="frey_rawface.mat in .* does not match its published SHA-256"):
        load_dataset("frey-face", data_dir=tmp_path, download=False)
