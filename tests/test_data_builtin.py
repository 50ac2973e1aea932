"""The built-in datasets (`aevb.data.builtin`, `aevb.data.dataset`) read from the real files, against the
published counts, means and checksums; the data folder; the Dataset's properties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from aevb.data import BUILTIN, Dataset, default_data_dir, load_dataset
from aevb.data.download import sha256_file
from published import MNIST_TEST_COUNTS, MNIST_TRAIN_COUNTS

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


def test_digits_are_read_from_the_shipped_file_as_scikit_learn_reads_them(monkeypatch) -> None:
    """aevb reads scikit-learn's digits.csv.gz itself (no 1.5 s import of scikit-learn and scipy per run):
    the same arrays as `load_digits`, and the same again through `load_digits` where the file is absent."""
    from sklearn.datasets import load_digits

    from aevb.data import builtin

    images, target = builtin._digits_arrays()
    digits = load_digits()
    assert images.dtype == digits.images.dtype and np.array_equal(images, digits.images)
    assert np.array_equal(target, digits.target)
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)
    images, target = builtin._digits_arrays()
    assert np.array_equal(images, digits.images) and np.array_equal(target, digits.target)


@pytest.mark.slow  # a subprocess
def test_loading_digits_does_not_import_scikit_learn() -> None:
    import subprocess
    import sys

    from aevb_process import subprocess_env

    code = "import sys, aevb; aevb.load_dataset('digits'); print(sorted(m for m in sys.modules if 'sklearn' in m))"
    r = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


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
