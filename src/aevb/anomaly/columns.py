"""Which likelihood models which column of a table, which columns are rescaled, and the values each allows.

A detector's `likelihood` is one of `LIKELIHOODS`: one kind for every column, or "mixed" with a
`columns` spec (`aevb.config.parse_columns`, e.g. "gaussian-learned:3,poisson:2,categorical4:1") that
names a kind per group of consecutive columns. Only Gaussian columns are rescaled (and clipped): counts
(poisson), class indices (categorical) and values in [0, 1] (bernoulli) go to the model as they are.
"""

from __future__ import annotations

import numpy as np

from ..config import parse_columns
from .inputs import InputError

# a detector's decoders
LIKELIHOODS = ("gaussian-robust", "gaussian-learned", "gaussian", "student-t", "bernoulli", "poisson", "mixed")
# kinds whose columns are centred and scaled
RESCALED = ("gaussian-robust", "gaussian-learned", "gaussian", "student-t")


def column_groups(likelihood: str, columns: str | None, d: int) -> list[tuple[str, int, int]]:
    """[(kind, first column, categories)] per column group; InputError when `columns` does not fit d."""
    if likelihood != "mixed":
        if columns:
            raise InputError(f"columns is only for likelihood='mixed'; got columns={columns!r}")
        return [(likelihood, d, 0)]
    if not columns:
        raise InputError("likelihood='mixed' needs columns, e.g. columns='gaussian-learned:3,poisson:2'")
    try:
        groups = parse_columns(columns)
    except ValueError as e:
        raise InputError(str(e)) from None
    n = sum(count for _, count, _ in groups)
    if n != d:
        raise InputError(f"columns={columns!r} names {n} columns; X has {d}")
    return groups


def rescaled_mask(likelihood: str, columns: str | None, d: int) -> np.ndarray:
    """(d,) bool: the columns that are centred, scaled and clipped before the model sees them."""
    return np.concatenate([np.full(n, kind in RESCALED) for kind, n, _ in column_groups(likelihood, columns, d)])


def check_values(a: np.ndarray, likelihood: str, columns: str | None, what: str = "X") -> None:
    """InputError naming the first column group whose values its likelihood cannot model."""
    start = 0
    for kind, n, categories in column_groups(likelihood, columns, a.shape[1]):
        block, cols = a[:, start : start + n], f"column(s) {start}..{start + n - 1}"
        start += n
        if kind == "bernoulli" and (block.min() < 0 or block.max() > 1):
            raise InputError(
                f"{what} has values outside [0, 1] in {cols} ({block.min():g} .. {block.max():g}); the bernoulli "
                "likelihood needs [0, 1] data: rescale it or use likelihood='gaussian-learned'"
            )
        if kind == "poisson" and (block.min() < 0 or not np.array_equal(block, np.round(block))):
            raise InputError(
                f"{what} has values in {cols} that are not counts (whole numbers >= 0); the poisson likelihood "
                "models counts: use a gaussian kind for these columns"
            )
        if kind == "categorical" and (
            block.min() < 0 or block.max() > categories - 1 or not np.array_equal(block, np.round(block))
        ):
            raise InputError(
                f"{what} has values in {cols} that are not class indices 0..{categories - 1} "
                f"(categorical{categories}); encode the classes as 0..C-1"
            )
