"""Which likelihood models which column of a table, which columns are rescaled, and the values each allows.

A detector's `likelihood` is one of `likelihoods()`: one head for every column, or "mixed" with a
`columns` spec (`aevb.likelihoods.parse_columns`, e.g. "gaussian-learned:3,poisson:2,categorical4:1")
that names a head per group of consecutive columns. Only the columns of location-scale heads (their
`location_scale`, e.g. the Gaussians and student-t) are rescaled (and clipped): counts (poisson), class
indices (categorical) and values in [0, 1] (bernoulli) go to the model as they are. Everything here is
read from the heads of `aevb.likelihoods.LIKELIHOODS`.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import ModelConfig
from ..likelihoods import LIKELIHOODS, Likelihood, group_heads, make_likelihood, parse_columns, standardizable
from .inputs import InputError


def likelihoods() -> tuple[str, ...]:
    """A detector's likelihoods: the registered ones but categorical, whose classes a detector takes per
    column group only (likelihood='mixed', columns='categoricalC:N')."""
    return tuple(name for name in LIKELIHOODS if name != "categorical")


def rescaled_kinds() -> tuple[str, ...]:
    """The column kinds whose columns a detector centres, scales and clips: the location-scale ones (the
    heads are built with the default parameters, as `rescaled_mask` builds them)."""
    return standardizable(ModelConfig())


def _config(likelihood: str, columns: str | None, d: int) -> ModelConfig:
    """The model config that names the heads of d columns (their parameters are the defaults: what is
    read here, the support and location_scale, does not depend on them); InputError when `columns`
    does not fit d."""
    if likelihood != "mixed":
        if columns:
            raise InputError(f"columns is only for likelihood='mixed'; got columns={columns!r}")
        return ModelConfig(data_shape=(d,), likelihood=likelihood)
    if not columns:
        raise InputError("likelihood='mixed' needs columns, e.g. columns='gaussian-learned:3,poisson:2'")
    try:
        n = sum(count for _, count, _ in parse_columns(columns))
    except ValueError as e:
        raise InputError(str(e)) from None
    if n != d:
        raise InputError(f"columns={columns!r} names {n} columns; X has {d}")
    return ModelConfig(data_shape=(d,), likelihood=likelihood, columns=columns)


def column_heads(likelihood: str, columns: str | None, d: int) -> list[tuple[Likelihood, int]]:
    """(head, number of columns) per group of consecutive columns; InputError when `columns` does not fit d."""
    return group_heads(_config(likelihood, columns, d))


def rescaled_mask(likelihood: str, columns: str | None, d: int) -> np.ndarray:
    """(d,) bool: the columns that are centred, scaled and clipped before the model sees them."""
    return np.concatenate([np.full(n, head.location_scale) for head, n in column_heads(likelihood, columns, d)])


def check_values(a: np.ndarray, likelihood: str, columns: str | None, what: str = "X") -> None:
    """InputError naming the first value of a (n, d) that its column's likelihood cannot model (the head's
    `check`: its row, its feature and the column group)."""
    problem = make_likelihood(_config(likelihood, columns, a.shape[1])).check(torch.tensor(a))
    if problem is not None:
        raise InputError(f"{what} {problem}")
