"""Decoder heads: turn the decoder network's output into p(x|z), a torch distribution.

Distributions are built with validate_args=False: the checks cost time on every step, and
non-finite values are caught by the trainer, which names the epoch.

Each head says how many outputs per data dimension it needs (`outputs_per_dim`) and maps the
network output h, shape (..., outputs_per_dim * D), to a distribution with event shape (D,).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from .config import ModelConfig


@dataclass(frozen=True)
class BernoulliLikelihood:
    """p(x|z) = prod_d Bernoulli(x_d; sigmoid(h_d)), parameterised by logits (no sigmoid + BCE)."""

    outputs_per_dim: int = 1

    def __call__(self, h: torch.Tensor) -> Distribution:
        # grey levels in [0, 1] are allowed with --binarize none
        return Independent(Bernoulli(logits=h, validate_args=False), 1)


@dataclass(frozen=True)
class GaussianLikelihood:
    """p(x|z) = N(x; h, sigma^2 I) with a fixed sigma (sigma = 1 is the paper's basic form)."""

    sigma: float = 1.0
    outputs_per_dim: int = 1

    def __call__(self, h: torch.Tensor) -> Distribution:
        return Independent(Normal(h, torch.full_like(h, self.sigma), validate_args=False), 1)


@dataclass(frozen=True)
class LearnedGaussianLikelihood:
    """p(x|z) = N(x; mu, diag exp(logvar)); the decoder outputs [mu, logvar] per dimension.

    logvar is clamped to [logvar_min, logvar_max] so that the density cannot diverge on
    near-constant pixels (the gradient of a clamped entry is zero, which stops the runaway).
    """

    logvar_min: float = -9.0
    logvar_max: float = 6.0
    outputs_per_dim: int = 2

    def __call__(self, h: torch.Tensor) -> Distribution:
        mu, logvar = h.chunk(2, dim=-1)
        logvar = logvar.clamp(self.logvar_min, self.logvar_max)
        return Independent(Normal(mu, torch.exp(0.5 * logvar), validate_args=False), 1)


@dataclass(frozen=True)
class SquashedGaussianLikelihood:
    """p(x|z) = N(x; sigmoid(h_mu), diag exp(logvar)): the paper's Frey Face decoder (Section 5),
    a learned-variance Gaussian whose mean is squashed into (0, 1) like the [0, 1]-scaled data."""

    logvar_min: float = -9.0
    logvar_max: float = 6.0
    outputs_per_dim: int = 2

    def __call__(self, h: torch.Tensor) -> Distribution:
        mu, logvar = h.chunk(2, dim=-1)
        logvar = logvar.clamp(self.logvar_min, self.logvar_max)
        return Independent(Normal(torch.sigmoid(mu), torch.exp(0.5 * logvar), validate_args=False), 1)


LIKELIHOODS = {
    "bernoulli": lambda c: BernoulliLikelihood(),
    "gaussian": lambda c: GaussianLikelihood(sigma=c.sigma),
    "gaussian-learned": lambda c: LearnedGaussianLikelihood(c.logvar_min, c.logvar_max),
    "gaussian-learned-sigmoid": lambda c: SquashedGaussianLikelihood(c.logvar_min, c.logvar_max),
}


def make_likelihood(config: ModelConfig):
    """The decoder head named by `config.likelihood`."""
    return LIKELIHOODS[config.likelihood](config)
