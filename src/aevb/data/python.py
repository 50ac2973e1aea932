"""Data handed over from Python (a NumPy array, a torch tensor, a pandas DataFrame or an in-memory
`torch.utils.data.Dataset`) as a Dataset, checked by the same code as user files (`tables.check_features`,
`tables.check_labels`, `load.as_features`) and split like them (`load.split_rows`) unless `valid` is given.

DataFrame columns of pandas' `category` dtype become their category codes 0..C-1 (the class indices that
`likelihood="mixed"` with `columns="categoricalC:N"` scores); any other non-numeric column is an error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from aevb.errors import DataError

from .dataset import Dataset
from .load import as_features, split_dataset
from .tables import check_features, check_labels

PYTHON = "python"  # the dataset name a run trained on data from Python records (with the shape)


def is_python_name(name: str) -> bool:
    """True for the dataset name `from_python` gives, e.g. "python:1797x64"."""
    return name == PYTHON or name.startswith(PYTHON + ":")


def from_python(data: Any, labels: Any = None, valid: Any = None, valid_labels: Any = None) -> Dataset:
    """`data` (rows first) as a Dataset named "python:NxD...": split about 80/10/10 like a file, or, with
    `valid`, trained on all of `data` and validated (and tested) on `valid`. Labels are `(N,)` whole numbers;
    a torch Dataset whose items are (x, y) brings its own. A one-line DataError for bad input."""
    x, y = _array(data, "data")
    y = _labels(labels, y, len(x), "data")
    features = as_features(check_features(x, "data"), "data")
    y = None if y is None else torch.from_numpy(y)
    if valid is None:
        if valid_labels is not None:
            raise DataError("valid_labels= needs valid=")
        return split_dataset(_name(features), features, y)
    vx, vy = _array(valid, "valid")
    vy = _labels(valid_labels, vy, len(vx), "valid")
    v = as_features(check_features(vx, "valid"), "valid")
    if v.shape[1:] != features.shape[1:]:
        raise DataError(f"valid has rows of shape {tuple(v.shape[1:])}; data has {tuple(features.shape[1:])}")
    if (y is None) != (vy is None):
        raise DataError("labels are needed for both data and valid, or for neither")
    vy = None if vy is None else torch.from_numpy(vy)
    return Dataset(
        _name(features), tuple(features.shape[1:]), features, v, v, train_labels=y, valid_labels=vy, test_labels=vy
    )


def _name(features: torch.Tensor) -> str:
    return f"{PYTHON}:{'x'.join(str(s) for s in features.shape)}"


def _labels(given: Any, found: np.ndarray | None, n: int, what: str) -> np.ndarray | None:
    """Labels given as an argument, else those a torch Dataset's items brought, as checked (n,) int64."""
    if given is not None and found is not None:
        raise DataError(f"{what}: its items are (x, y) pairs and labels= was given too; pass one or the other")
    y = found if given is None else _array(given, f"{what} labels")[0]
    return None if y is None else check_labels(y, n, f"{what}")


def _array(data: Any, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """`data` as a numpy array (rows first), and the labels of a torch Dataset of (x, y) items, else None."""
    if isinstance(data, torch.Tensor):
        return data.detach().cpu().numpy(), None
    if hasattr(data, "dtypes") and hasattr(data, "columns"):  # a pandas DataFrame
        return _frame(data, what), None
    if isinstance(data, torch.utils.data.Dataset):
        return _torch_dataset(data, what)
    if hasattr(data, "dtype") and hasattr(data, "to_numpy"):  # a pandas Series (labels)
        return data.to_numpy(), None
    try:
        a = np.asarray(data)
    except ValueError as e:  # ragged rows
        raise DataError(f"{what} is not a rectangular array ({e})") from None
    if a.dtype.hasobject:
        raise DataError(f"{what} holds Python objects (dtype object), not numbers")
    return a, None


def _frame(frame: Any, what: str) -> np.ndarray:
    """A DataFrame's columns as one (n, d) float64 array; category columns as their codes 0..C-1."""
    columns = []
    for name in frame.columns:
        column = frame[name]
        if str(column.dtype) == "category":
            codes = column.cat.codes.to_numpy()
            if (codes < 0).any():
                raise DataError(f"{what}: column {str(name)!r} has missing values (NaN) among its categories")
            columns.append(codes.astype(np.float64))
        elif _numeric(column.dtype):
            columns.append(column.to_numpy(dtype=np.float64, na_value=np.nan))
        else:
            raise DataError(
                f"{what}: column {str(name)!r} holds {column.dtype}, not numbers; "
                "convert it to numbers or to pandas' category dtype"
            )
    if not columns:
        raise DataError(f"{what}: has no columns")
    return np.stack(columns, axis=1)


def _numeric(dtype: Any) -> bool:
    try:
        return np.dtype(dtype).kind in "biuf"
    except TypeError:  # pandas extension dtypes (nullable Int64, string)
        return getattr(dtype, "kind", "O") in "biuf"


def _torch_dataset(data: Any, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """All items of an in-memory torch Dataset (each x, or (x, y)) stacked: (n, ...) and (n,) or None."""
    try:
        n = len(data)
    except TypeError:
        raise DataError(f"{what}: a torch Dataset without len() (an iterable one) cannot be loaded") from None
    items = [data[i] for i in range(n)]
    if n == 0:
        raise DataError(f"{what} is empty (no rows)")
    paired = isinstance(items[0], (tuple, list))
    if paired and len(items[0]) != 2:
        raise DataError(f"{what}: items must be x or (x, y), got tuples of {len(items[0])}")
    xs = [item[0] if paired else item for item in items]
    try:
        x = np.stack([np.asarray(v) for v in xs])
        y = np.asarray([np.asarray(item[1]).item() for item in items]) if paired else None
    except ValueError as e:
        raise DataError(f"{what}: items differ in shape or labels are not single numbers ({e})") from None
    return x, y
