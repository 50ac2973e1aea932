"""Decoder heads: turn the decoder network's output into p(x|z), a torch distribution.

Distributions are built with validate_args=False: the checks cost time on every step, and
non-finite values are caught by the trainer, which names the epoch.

A head may also have `log_prob(h, x)`: log p(x|z) straight from the network output, (...,) in nats,
equal to `head(h).log_prob(x)` up to float rounding but without building the distribution. The
objectives use it when present (the hot path of training and evaluation); `decode()` still returns
distributions for everyone else. It computes in fp32 even when h is bf16 (autocast).

Each head says how many outputs per data dimension it needs (`outputs_per_dim`) and maps the
network output h, shape (..., outputs_per_dim * D), to a distribution with event shape (D,).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from .config import ModelConfig


@dataclass(frozen=True)
class BernoulliLikelihood:
    """p(x|z) = prod_d Bernoulli(x_d; sigmoid(h_d)), parameterised by logits (no sigmoid + BCE)."""

    outputs_per_dim: int = 1

    def __call__(self, h: torch.Tensor) -> Distribution:
        # grey levels in [0, 1] are allowed with --binarize none
        return Independent(Bernoulli(logits=h, validate_args=False), 1)

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """sum_d x_d h_d - softplus(h_d), (...,) for h (..., B, D) and x (B, D): the Bernoulli
        log-likelihood on logits. One product-sum and one softplus pass, the same math as
        binary_cross_entropy_with_logits (which makes three passes); x may be grey levels."""
        h = h.float() if h.dtype in (torch.float16, torch.bfloat16) else h
        x = x.to(h.dtype)
        xh = torch.einsum("...bd,bd->...b", h, x) if x.dim() == 2 else (h * x).sum(-1)  # no (..., B, D) copy of x
        return xh - F.softplus(h).sum(-1)


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
