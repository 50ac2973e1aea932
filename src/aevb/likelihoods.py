"""Decoder heads: turn the decoder network's output h into p(x|z), a torch distribution.

Every head implements the whole `Likelihood` protocol below; `LIKELIHOODS` maps each name to a factory
taking the `ModelConfig`, and is the only list of names: the config's checks, the CLI's choices, the
column kinds of `mixed` and the anomaly detector's likelihoods are read from it. Adding a likelihood is
one class and one entry there. Heads share behaviour through the module-level helpers they call
(`aevb.heads_shared`: `log_prob_via_distribution`, `sample_normal`, `check_real`, `rescale_normal`, ...),
not through a base class. The heads live by family: `aevb.heads_discrete` (bernoulli, poisson,
categorical), `aevb.heads_real` (the Gaussians, student-t) and `aevb.heads_mixed` (a head per group of
columns); every name is importable from here.

The members, for D features, h the decoder output (..., outputs(D)) and x data (..., D):
- `outputs(d)`: the decoder's output size for d features (e.g. 2d for [mu, log sigma^2] per feature);
- `head(h)`: p(x|z), a distribution with batch shape h.shape[:-1] and event shape (D,);
- `log_prob(h, x)`: log p(x|z) summed over the features, (...,) nats in fp32 even when h is bf16
  (autocast): a fused formula where one exists (the hot path of training and evaluation), else
  through the distribution (`log_prob_via_distribution`);
- `sample(h, generator)`: one draw x ~ p(x|z), shape (..., D), reproducible through the generator;
- `encoder_input(x)`: what q(z|x) sees (x itself but for counts: log(1 + x));
- `check(x, first_feature=0)`: None when every value of x (N, D) is in the support, else a message
  naming the first value that is not (its row and feature; x's first column is feature
  `first_feature`) and what the head needs; the caller prefixes the data's name;
- `location_scale`: whether the family is closed under x -> shift + scale * x, so that the data may be
  standardised (`ModelConfig.standardize`) and the anomaly detector centres and scales its columns;
  then `rescaled(h, shift, scale)` is the distribution of shift + scale * x' for x' ~ head(h) (D,)-shaped
  shift and scale; heads that are not location-scale raise ValueError.

Distributions are built with validate_args=False: the checks cost time on every step, and non-finite
values are caught by the trainer, which names the epoch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch
from torch.distributions import Distribution

from .heads_discrete import BernoulliLikelihood, CategoricalLikelihood, PoissonLikelihood
from .heads_mixed import MixedLikelihood
from .heads_real import GaussianLikelihood, LearnedGaussianLikelihood, RobustGaussianLikelihood, StudentTLikelihood
from .heads_shared import (
    check_real,
    fp32,
    identity,
    log_prob_via_distribution,
    not_location_scale,
    rescale_normal,
    rescale_student_t,
    sample_normal,
    sample_student_t,
    support_message,
)

if TYPE_CHECKING:
    from .config import ModelConfig

__all__ = [
    "LIKELIHOODS",
    "Likelihood",
    "make_likelihood",
    "column_kinds",
    "standardizable",
    "parse_columns",
    "group_heads",
    "make_mixed",
    "BernoulliLikelihood",
    "PoissonLikelihood",
    "CategoricalLikelihood",
    "GaussianLikelihood",
    "LearnedGaussianLikelihood",
    "StudentTLikelihood",
    "RobustGaussianLikelihood",
    "MixedLikelihood",
    "fp32",
    "log_prob_via_distribution",
    "sample_normal",
    "sample_student_t",
    "rescale_normal",
    "rescale_student_t",
    "not_location_scale",
    "identity",
    "support_message",
    "check_real",
]


class Likelihood(Protocol):
    """A decoder head p(x|z); see the module docstring for what each member returns."""

    @property
    def location_scale(self) -> bool: ...

    def outputs(self, d: int) -> int: ...

    def __call__(self, h: torch.Tensor) -> Distribution: ...

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...

    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor: ...

    def check(self, x: torch.Tensor, first_feature: int = 0) -> str | None: ...

    def rescaled(self, h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> Distribution: ...


# --- the registry --------------------------------------------------------------------------------


def parse_columns(spec: str) -> list[tuple[str, int, int]]:
    """The groups of `ModelConfig.columns`, in column order: [(kind, count, categories)].

    `spec` is comma-separated KIND[:N], N consecutive columns (default 1) of one likelihood: KIND is one
    of `column_kinds()` (every registered likelihood but mixed), written categoricalC for class indices
    0..C-1 (C >= 2), e.g. "gaussian-learned:3,categorical4:1,poisson:2". categories is 0 but for
    categorical. Raises ValueError naming the bad group."""
    groups, kinds = [], column_kinds()
    for part in spec.split(","):
        kind, _, count = part.strip().partition(":")
        c = 0
        if kind.startswith("categorical"):
            digits = kind[len("categorical") :]
            c = int(digits) if digits.isdigit() else 0
            if c < 2:
                raise ValueError(
                    f"columns: {part.strip()!r}: categorical needs its classes, e.g. categorical4 (C >= 2)"
                )
            kind = "categorical"
        if kind not in kinds:
            raise ValueError(f"columns: {part.strip()!r}: the kind must be one of {', '.join(kinds)}")
        n = int(count) if count.strip().isdigit() else (1 if count == "" else 0)
        if n < 1:
            raise ValueError(f"columns: {part.strip()!r}: the count after ':' must be a whole number >= 1")
        groups.append((kind, n, c))
    return groups


def group_heads(c: ModelConfig) -> list[tuple[Likelihood, int]]:
    """(head, number of columns) per group of consecutive columns: the groups of `c.columns` (mixed),
    else one group of all `c.data_dim` columns under the head `c.likelihood` names."""
    if not c.columns:
        return [(make_likelihood(c), c.data_dim)]
    return [
        (CategoricalLikelihood(cats) if kind == "categorical" else LIKELIHOODS[kind](c), count)
        for kind, count, cats in parse_columns(c.columns)
    ]


def make_mixed(c: ModelConfig) -> MixedLikelihood:
    """The `mixed` head of `c.columns`; ValueError when the groups do not cover the data's columns."""
    groups = group_heads(c)
    n = sum(count for _, count in groups)
    if n != c.data_dim:
        raise ValueError(f"columns names {n} columns; the data has {c.data_dim}")
    return MixedLikelihood(tuple(groups))


LIKELIHOODS = {
    "bernoulli": lambda c: BernoulliLikelihood(),
    "gaussian": lambda c: GaussianLikelihood(sigma=c.sigma),
    "gaussian-learned": lambda c: LearnedGaussianLikelihood(c.logvar_min, c.logvar_max),
    "gaussian-learned-sigmoid": lambda c: LearnedGaussianLikelihood(c.logvar_min, c.logvar_max, squash=True),
    "student-t": lambda c: StudentTLikelihood(c.df, c.logvar_min, c.logvar_max),  # heavy tails, `df`
    # gaussian-learned mixed with a Cauchy background of weight `outlier_weight`
    "gaussian-robust": lambda c: RobustGaussianLikelihood(c.outlier_weight, c.logvar_min, c.logvar_max),
    "poisson": lambda c: PoissonLikelihood(),
    "categorical": lambda c: CategoricalLikelihood(c.categories),
    "mixed": make_mixed,  # one of the others per group of columns, named by `columns`
}


def column_kinds() -> tuple[str, ...]:
    """The registered likelihoods that may model a group of `mixed`'s columns: all but mixed itself."""
    return tuple(name for name, make in LIKELIHOODS.items() if make is not make_mixed)


def standardizable(c: ModelConfig) -> tuple[str, ...]:
    """The registered likelihoods whose heads (built from c's parameters) are location-scale: those
    `ModelConfig.standardize` allows."""
    return tuple(name for name in column_kinds() if LIKELIHOODS[name](c).location_scale)


def make_likelihood(config: ModelConfig) -> Likelihood:
    """The decoder head named by `config.likelihood`."""
    return LIKELIHOODS[config.likelihood](config)
