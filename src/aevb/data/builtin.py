"""The built-in datasets: their files, checksums, mirrors and fixed splits."""

from __future__ import annotations

import importlib.util
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aevb.errors import DataError

from .dataset import Dataset
from .formats import read_amat, read_frey, read_idx


def default_data_dir() -> Path:
    """Where built-in datasets live: `$AEVB_DATA_DIR`, else `$XDG_CACHE_HOME/aevb`,
    else `~/.cache/aevb`."""
    if os.environ.get("AEVB_DATA_DIR"):
        return Path(os.environ["AEVB_DATA_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "aevb"


@dataclass(frozen=True)
class DataFile:
    """One file of a built-in dataset: its name in the dataset's folder, SHA-256 and mirrors."""

    name: str
    sha256: str
    urls: tuple[str, ...]


@dataclass(frozen=True)
class Spec:
    """A built-in dataset: files under `<data_dir>/<folder>/` and the loader that splits them."""

    name: str
    folder: str
    files: tuple[DataFile, ...]
    loader: Callable[[Path], Dataset]  # the folder -> the split Dataset

    @property
    def split_rule(self) -> str:
        """The documented train / valid / test rule: the loader's docstring."""
        return inspect.getdoc(self.loader) or ""


def _images(x: np.ndarray, scale: float) -> torch.Tensor:
    """`(N, H, W)` float32 in [0, 1] from raw pixel values in [0, scale]."""
    return torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32).div_(scale)


def _labels(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))


def _read(reader: Callable[[Path], np.ndarray], path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """`reader(path)` when it has `shape`; any other shape is not the published file."""
    array = reader(path)
    if array.shape != shape:
        raise DataError(f"{path}: holds shape {array.shape}, expected {shape}")
    return array


def _read_mnist_format(name: str, folder: Path) -> Dataset:
    """The four IDX files of MNIST or Fashion-MNIST, split 50,000 / 10,000 / 10,000."""
    x = _images(_read(read_idx, folder / "train-images-idx3-ubyte.gz", (60000, 28, 28)), 255)
    y = _labels(_read(read_idx, folder / "train-labels-idx1-ubyte.gz", (60000,)))
    x_test = _images(_read(read_idx, folder / "t10k-images-idx3-ubyte.gz", (10000, 28, 28)), 255)
    y_test = _labels(_read(read_idx, folder / "t10k-labels-idx1-ubyte.gz", (10000,)))
    return Dataset(
        name,
        (28, 28),
        train=x[:50000],
        valid=x[50000:],
        test=x_test,
        train_labels=y[:50000],
        valid_labels=y[50000:],
        test_labels=y_test,
    )


def _load_mnist(folder: Path) -> Dataset:
    """MNIST: train = the first 50,000 images of the training file, valid = its last 10,000,
    test = the 10,000 test images. Pixels / 255, shape (28, 28); digit labels 0-9 kept."""
    return _read_mnist_format("mnist", folder)


def _load_fashion_mnist(folder: Path) -> Dataset:
    """Fashion-MNIST: train = the first 50,000 images of the training file, valid = its last
    10,000, test = the 10,000 test images. Pixels / 255, shape (28, 28); class labels 0-9 kept."""
    return _read_mnist_format("fashion-mnist", folder)


def _load_binarized_mnist(folder: Path) -> Dataset:
    """Binarized MNIST (Larochelle & Murray): its own train / valid / test files, 50,000 /
    10,000 / 10,000 fixed 0/1 images of shape (28, 28); no labels."""
    splits = {}
    for split, n in (("train", 50000), ("valid", 10000), ("test", 10000)):
        pixels = _read(read_amat, folder / f"binarized_mnist_{split}.amat", (n, 784))
        splits[split] = _images(pixels.reshape(n, 28, 28), 1)
    return Dataset("binarized-mnist", (28, 28), **splits)


def _load_frey_face(folder: Path) -> Dataset:
    """Frey Face: 1,965 video frames of shape (28, 20), pixels / 255, no labels. Split
    contiguously in video order (neighbouring frames are near-duplicates, so a random split
    would leak them into the test set): train = first 1,565, valid = next 200, test = last 200."""
    x = _images(_read(read_frey, folder / "frey_rawface.mat", (1965, 28, 20)), 255)
    return Dataset("frey-face", (28, 20), train=x[:1565], valid=x[1565:1765], test=x[1765:])


def _load_digits(folder: Path) -> Dataset:
    """Digits (scikit-learn's bundled UCI 8x8 digits, no files): 1,797 images of shape (8, 8),
    values / 16, labels 0-9 kept. Rows reordered by `np.random.default_rng(0).permutation(1797)`;
    train = the first 1,297, valid = the next 200, test = the last 300."""
    images, target = _digits_arrays()
    order = np.random.default_rng(0).permutation(len(images))
    x, y = _images(images[order], 16), _labels(target[order])
    return Dataset(
        "digits",
        (8, 8),
        train=x[:1297],
        valid=x[1297:1497],
        test=x[1497:],
        train_labels=y[:1297],
        valid_labels=y[1297:1497],
        test_labels=y[1497:],
    )


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8), labels (1797,)) as `sklearn.datasets.load_digits` gives them, read from the file
    scikit-learn ships (datasets/data/digits.csv.gz: 64 values and the label per row) without importing
    scikit-learn, whose import (scipy with it) took 1.5 s of every `aevb train` on digits; through
    `load_digits` where that file is not found."""
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            rows = np.loadtxt(path, delimiter=",")
            return rows[:, :-1].reshape(-1, 8, 8), rows[:, -1].astype(int)
    from sklearn.datasets import load_digits  # another layout of scikit-learn: its own reader

    digits = load_digits()
    return digits.images, digits.target


def _files(base: str | tuple[str, ...], sums: dict[str, str]) -> tuple[DataFile, ...]:
    """DataFiles for `sums` (name -> SHA-256), each fetched from every base URL in turn."""
    bases = (base,) if isinstance(base, str) else base
    return tuple(DataFile(name, sha, tuple(b + name for b in bases)) for name, sha in sums.items())


_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_BINARIZED_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
_FREY_URL = "https://cs.nyu.edu/~roweis/data/"

# SHA-256s as published by tensorflow/datasets (and listed in the data README).
BUILTIN: dict[str, Spec] = {
    "digits": Spec("digits", "digits", (), _load_digits),
    "mnist": Spec(
        "mnist",
        "mnist",
        _files(
            _MNIST_URLS,
            {
                "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            },
        ),
        _load_mnist,
    ),
    "fashion-mnist": Spec(
        "fashion-mnist",
        "fashion-mnist",
        _files(
            _FASHION_URL,
            {
                "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            },
        ),
        _load_fashion_mnist,
    ),
    "binarized-mnist": Spec(
        "binarized-mnist",
        "binarized-mnist",
        _files(
            _BINARIZED_URL,
            {
                "binarized_mnist_train.amat": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
                "binarized_mnist_valid.amat": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
                "binarized_mnist_test.amat": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
            },
        ),
        _load_binarized_mnist,
    ),
    "frey-face": Spec(
        "frey-face",
        "frey-face",
        _files(
            _FREY_URL,
            {
                "frey_rawface.mat": "265a83a23adb081755cd3de375509828e690324d1d60f076b8ecebc840d59c64",
            },
        ),
        _load_frey_face,
    ),
}
