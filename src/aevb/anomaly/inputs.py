"""Turning what a user hands the detector (numpy array, pandas DataFrame, list of rows) into a
checked float32 matrix, with one clear error per kind of bad input."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DataError


class InputError(DataError, ValueError):
    """Bad input to the detector: an `aevb.DataError` for the CLI, a ValueError for scikit-learn."""


class InputTypeError(InputError, TypeError):
    """A value that is not a number where the detector needs one (a TypeError too, as numpy's own)."""


def feature_names(X: Any) -> np.ndarray | None:
    """The column names of a DataFrame (as an object array of str), else None."""
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "dtypes"):
        return None
    return np.asarray([str(c) for c in columns], dtype=object)


def as_matrix(X: Any, what: str = "X") -> np.ndarray:
    """X as a finite float64 (n, d) array; InputError naming the problem otherwise."""
    if hasattr(X, "dtypes") and hasattr(X, "columns"):  # a pandas DataFrame, checked column by column
        bad = [str(c) for c, t in zip(X.columns, X.dtypes) if not _numeric_dtype(t)]
        if bad:
            raise InputError(
                f"{what} has non-numeric column(s) {', '.join(map(repr, bad[:5]))}"
                f"{' …' if len(bad) > 5 else ''}; encode them as numbers (e.g. one-hot) first"
            )
        X = X.to_numpy(dtype=np.float64, na_value=np.nan)
    if hasattr(X, "toarray") and hasattr(X, "nnz"):  # scipy.sparse, matrix or array
        raise InputError(f"{what} is a sparse matrix: sparse input is not supported; pass a dense array (X.toarray())")
    try:
        a = np.asarray(X)
    except ValueError as e:  # ragged rows
        raise InputError(f"{what} is not a rectangular table ({e})") from None
    if a.dtype.kind == "O":  # numbers held as Python objects (as scikit-learn's check_array, read them as floats)
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError) as e:
            raise InputTypeError(
                f"{what} is not numeric (dtype object: {e}); encode non-numeric features as numbers first"
            ) from None
    if a.dtype.kind == "c":
        raise InputError(f"{what} is complex (dtype {a.dtype}). Complex data not supported")
    if a.dtype.kind not in "biuf":
        raise InputError(f"{what} is not numeric (dtype {a.dtype}); encode non-numeric features as numbers first")
    if a.ndim != 2:
        raise InputError(
            f"{what} must be 2-D (rows x features), got shape {a.shape}. Reshape your data: X.reshape(-1, 1) for "
            "one feature, X.reshape(1, -1) for one row, images to (n, height * width)"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        kind = "sample" if a.shape[0] == 0 else "feature"
        raise InputError(f"{what} is empty: 0 {kind}(s) (shape={a.shape}) while a minimum of 1 is required.")
    a = a.astype(np.float64, copy=False)
    finite = np.isfinite(a)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise InputError(
            f"{what} contains NaN or inf ({int((~finite).sum())} values, the first at row {row}, column {col}); "
            "impute or drop them first"
        )
    return a


def _numeric_dtype(dtype: Any) -> bool:
    try:
        return np.dtype(dtype).kind in "biuf"
    except TypeError:  # pandas extension dtypes (nullable Int64, category, string)
        return getattr(dtype, "kind", "O") in "biuf"
