"""One entry point: a built-in dataset name or a user file path -> a split Dataset."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from aevb.errors import DataError

from .builtin import BUILTIN, Spec, default_data_dir
from .dataset import Dataset
from .download import fetch, sha256_file
from .tables import TABLE_SUFFIXES, read_table

_HOW_TO_GET = "see README: Datasets"


def load_dataset(name_or_path: str | os.PathLike, data_dir: str | Path | None = None, download: bool = True) -> Dataset:
    """The named built-in dataset, or a user .npy / .npz / .csv file, split train / valid / test.

    Built-in files live in `<data_dir or default_data_dir()>/<folder>/` and are downloaded
    (checksummed) when missing and `download` is true. Split rules: see `BUILTIN[name].split_rule`
    and `split_rows` for user files.
    """
    key = os.fspath(name_or_path)
    spec = BUILTIN.get(key)
    if spec is not None:
        return _load_builtin(spec, Path(data_dir) if data_dir else default_data_dir(), download)
    if Path(key).suffix.lower() in TABLE_SUFFIXES:
        return _load_user_file(key)
    raise DataError(f"unknown dataset {key!r}; built-in: {', '.join(BUILTIN)}, or a {'/'.join(TABLE_SUFFIXES)} file")


def _load_builtin(spec: Spec, data_dir: Path, download: bool) -> Dataset:
    """Fetch the spec's missing files, then read them; a read failure names any corrupt file."""
    folder = data_dir / spec.folder
    missing = [f for f in spec.files if not (folder / f.name).is_file()]
    for i, file in enumerate(missing):
        where = f"place {', '.join(f.name for f in missing[i:])} in {folder}{os.sep} ({_HOW_TO_GET})"
        if not download:
            raise DataError(f"{spec.name}: missing files and download is off; {where}")
        try:
            fetch(list(file.urls), folder / file.name, file.sha256)
        except DataError as exc:
            raise DataError(f"{spec.name}: {exc}; {where}") from exc
    try:
        return spec.loader(folder)
    except DataError as exc:
        # Files are not re-hashed on every load (100+ MB); only now is it worth the time.
        corrupt = [f.name for f in spec.files if not _matches(folder / f.name, f.sha256)]
        if not corrupt:
            raise
        raise DataError(
            f"{exc}; {', '.join(corrupt)} in {folder}{os.sep} does not match its "
            "published SHA-256 (corrupt or incomplete): delete it to download it "
            f"again ({_HOW_TO_GET})"
        ) from exc


def _matches(path: Path, sha256: str) -> bool:
    try:
        return sha256_file(path) == sha256
    except DataError:
        return False


def split_rows(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (train, valid, test) for a user file of `n` rows.

    Rows are reordered by `np.random.default_rng(0).permutation(n)`; valid and test each
    get `max(1, round(0.1 * n))` rows, train the rest (about 80 / 10 / 10).
    """
    if n < 3:
        raise ValueError(f"need at least 3 rows to split, got {n}")
    order = np.random.default_rng(0).permutation(n)
    held_out = max(1, round(0.1 * n))
    n_train = n - 2 * held_out
    return order[:n_train], order[n_train : n_train + held_out], order[n_train + held_out :]


def read_user_file(path: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """All rows of a user file as float32 (N, D) or (N, H, W), and its labels or None.

    Tables keep their values; uint8 images are scaled / 255 like the built-in ones. Colour images
    come out channels first, (N, C, H, W): a channels-last (N, H, W, 3) array is transposed.
    """
    x, y = read_table(path)
    return as_features(x, path), (torch.from_numpy(y) if y is not None else None)


def as_features(x: np.ndarray, where: str) -> torch.Tensor:
    """A checked feature array (`tables.check_features`) as the float32 rows a Dataset holds:
    uint8 images scaled / 255, channels-last colour images transposed to (N, C, H, W)."""
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, H, W, C) -> (N, C, H, W)
    with np.errstate(over="ignore"):  # float64 beyond float32's range is reported just below
        features = torch.from_numpy(x.astype(np.float32))
    if x.ndim >= 3 and x.dtype == np.uint8:
        features /= 255  # 8-bit images, like the built-in ones, live in [0, 1]
    elif not torch.isfinite(features).all():
        raise DataError(f"{where}: has values too large for float32 (beyond 3.4e38)")
    return features


def _load_user_file(path: str) -> Dataset:
    """A user file as a Dataset, split by `split_rows`."""
    features, y_all = read_user_file(path)
    return split_dataset(path, features, y_all)


def split_dataset(name: str, features: torch.Tensor, y_all: torch.Tensor | None) -> Dataset:
    """All rows of one source as a Dataset named `name`, split train / valid / test by `split_rows`."""
    if len(features) < 3:
        raise DataError(f"{name}: has {len(features)} rows; at least 3 are needed (one each for train, valid and test)")
    train, valid, test = (torch.from_numpy(rows) for rows in split_rows(len(features)))
    labels = {}
    if y_all is not None:
        labels = dict(train_labels=y_all[train], valid_labels=y_all[valid], test_labels=y_all[test])
    return Dataset(
        name, tuple(features.shape[1:]), train=features[train], valid=features[valid], test=features[test], **labels
    )
