"""The decoder heads of real-valued data: `GaussianLikelihood` (fixed sigma), `LearnedGaussianLikelihood`
([mu, log sigma^2] per feature, optionally a squashed mean), `StudentTLikelihood` (heavy tails) and
`RobustGaussianLikelihood` (a Gaussian with a Cauchy background). All are location-scale but the
squashed Gaussian. Each implements the whole `aevb.likelihoods.Likelihood` interface; the registry
there names them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Distribution, Independent, Normal, StudentT

from .distributions import ContaminatedNormal, with_background
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
)


def _mean_and_scale(h: torch.Tensor, logvar_min: float, logvar_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The [mu, log sigma^2] heads' split of the network output h: mu and sigma = exp(logvar / 2), with
    logvar clamped to [logvar_min, logvar_max]."""
    mu, logvar = h.chunk(2, dim=-1)
    return mu, torch.exp(0.5 * logvar.clamp(logvar_min, logvar_max))


@dataclass(frozen=True)
class GaussianLikelihood:
    """p(x|z) = N(x; h, sigma^2 I) with a fixed sigma (sigma = 1 is the paper's basic form)."""

    sigma: float = 1.0
    location_scale = True

    def outputs(self, d: int) -> int:
        return d

    def __call__(self, h: torch.Tensor) -> Distribution:
        return Independent(Normal(h, torch.full_like(h, self.sigma), validate_args=False), 1)

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return log_prob_via_distribution(self, h, x)

    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return sample_normal(self(h), generator)

    encoder_input = staticmethod(identity)
    check = staticmethod(check_real)

    def rescaled(self, h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> Distribution:
        return rescale_normal(self(h), shift, scale)


@dataclass(frozen=True)
class LearnedGaussianLikelihood:
    """p(x|z) = N(x; mu, diag exp(logvar)); the decoder outputs [mu, logvar] per dimension.

    logvar is clamped to [logvar_min, logvar_max] so that the density cannot diverge on
    near-constant pixels (the gradient of a clamped entry is zero, which stops the runaway).
    squash=True: mu = sigmoid(h_mu), in (0, 1) like [0, 1]-scaled data: the paper's Frey Face
    decoder (Section 5); a squashed mean is not location-scale (it cannot follow a shift).
    """

    logvar_min: float = -9.0
    logvar_max: float = 6.0
    squash: bool = False

    @property
    def location_scale(self) -> bool:
        return not self.squash

    def outputs(self, d: int) -> int:
        return 2 * d

    def __call__(self, h: torch.Tensor) -> Distribution:
        mu, scale = _mean_and_scale(h, self.logvar_min, self.logvar_max)
        mu = torch.sigmoid(mu) if self.squash else mu
        return Independent(Normal(mu, scale, validate_args=False), 1)

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return log_prob_via_distribution(self, h, x)

    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return sample_normal(self(h), generator)

    encoder_input = staticmethod(identity)
    check = staticmethod(check_real)

    def rescaled(self, h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> Distribution:
        return rescale_normal(self(h), shift, scale) if self.location_scale else not_location_scale(self)


@dataclass(frozen=True)
class StudentTLikelihood:
    """p(x|z) = prod_d StudentT(x_d; df, mu_d, sigma_d): a heavy-tailed decoder; the network outputs
    [mu, log sigma^2] per dimension (log sigma^2 clamped like the learned Gaussian's log-variance).

    A value far from mu costs ~(df + 1) log|x - mu| nats instead of (x - mu)^2 / 2 sigma^2, so a few
    extreme training values do not force a large sigma on everyone, and an isolated extreme value
    still scores low. df -> infinity is `gaussian-learned`.
    """

    df: float = 5.0
    logvar_min: float = -9.0
    logvar_max: float = 6.0
    location_scale = True

    def outputs(self, d: int) -> int:
        return 2 * d

    def __call__(self, h: torch.Tensor) -> Distribution:
        mu, scale = _mean_and_scale(h, self.logvar_min, self.logvar_max)
        return Independent(StudentT(torch.full_like(mu, self.df), mu, scale, validate_args=False), 1)

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return log_prob_via_distribution(self, h, x)

    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return sample_student_t(self(h), generator)

    encoder_input = staticmethod(identity)
    check = staticmethod(check_real)

    def rescaled(self, h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> Distribution:
        return rescale_student_t(self(h), shift, scale)


@dataclass(frozen=True)
class RobustGaussianLikelihood:
    """p(x|z) = prod_d [(1 - w) N(x_d; mu_d, sigma_d^2) + w Cauchy(x_d; 0, 1)]: the learned Gaussian of
    `gaussian-learned` ([mu, log sigma^2] per dimension, clamped alike) mixed with a fixed background of
    weight w = `outlier_weight`, for features centred and scaled to about unit spread (the anomaly
    detector's robust scaling: median 0, interquartile range 1).

    Fitting: a value the Gaussian cannot explain (an anomaly among the training rows, or a heavy tail)
    is taken by the background at a bounded cost, so it pulls neither mu nor sigma: a few extreme
    training rows cannot teach the decoder a large variance. Scoring: that value still costs
    -log(w / pi) + log(1 + x^2) nats, growing with its distance from the centre; a value the Gaussian
    does explain costs about what it costs under `gaussian-learned`. Standardised data (x = shift +
    scale * x'): the background moves with it, Cauchy(shift, scale) in the data's units.
    """

    outlier_weight: float = 0.2
    logvar_min: float = -9.0
    logvar_max: float = 6.0
    location_scale = True

    def outputs(self, d: int) -> int:
        return 2 * d

    def __call__(self, h: torch.Tensor) -> Distribution:
        mu, scale = _mean_and_scale(h, self.logvar_min, self.logvar_max)
        return Independent(ContaminatedNormal(mu, scale, self.outlier_weight), 1)

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over the features, (...,), in fp32 without building the distribution."""
        h = fp32(h)
        mu, logvar = h.chunk(2, dim=-1)
        logvar = logvar.clamp(self.logvar_min, self.logvar_max)
        x = x.to(h.dtype)
        log_normal = -0.5 * ((x - mu).square() * torch.exp(-logvar) + logvar + math.log(2 * math.pi))
        return with_background(log_normal, x, self.outlier_weight).sum(-1)

    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self(h).base_dist.sample(generator=generator)

    encoder_input = staticmethod(identity)
    check = staticmethod(check_real)

    def rescaled(self, h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> Distribution:
        mu, s = _mean_and_scale(h, self.logvar_min, self.logvar_max)
        loc, s = shift + scale * mu, scale * s
        return Independent(ContaminatedNormal(loc, s, self.outlier_weight, shift, scale), 1)
