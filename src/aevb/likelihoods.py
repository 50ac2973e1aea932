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

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch.distributions import (
    Bernoulli,
    Categorical,
    Distribution,
    Independent,
    Normal,
    Poisson,
    StudentT,
    constraints,
)

if TYPE_CHECKING:  # config reads the registries of the modules that import this one: no config import at run time
    from .config import ModelConfig


@dataclass(frozen=True)
class BernoulliLikelihood:
    """p(x|z) = prod_d Bernoulli(x_d; sigmoid(h_d)), parameterised by logits (no sigmoid + BCE)."""

    outputs_per_dim: int = 1

    def __call__(self, h: torch.Tensor) -> Distribution:
        # grey levels in [0, 1] are allowed with --binarize none
        return Independent(Bernoulli(logits=h, validate_args=False), 1)

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """sum_d x_d h_d - softplus(h_d), (...,) for h (..., B, D) and x (B, D) or (..., B, D): the
        Bernoulli log-likelihood on logits, in three elementwise passes (softplus; softplus - x h
        in one addcmul; the sum) that broadcast x over the samples. (An einsum for x.h becomes a
        batched matrix-vector product, several times slower on a CPU, and a bf16 one under autocast.)
        x may be grey levels."""
        h = h.float() if h.dtype in (torch.float16, torch.bfloat16) else h
        return -torch.addcmul(F.softplus(h), h, x.to(h.dtype), value=-1).sum(-1)


@dataclass(frozen=True)
class GaussianLikelihood:
    """p(x|z) = N(x; h, sigma^2 I) with a fixed sigma (sigma = 1 is the paper's basic form)."""

    sigma: float = 1.0
    outputs_per_dim: int = 1

    def __call__(self, h: torch.Tensor) -> Distribution:
        return Independent(Normal(h, torch.full_like(h, self.sigma), validate_args=False), 1)


def _mean_and_scale(h: torch.Tensor, logvar_min: float, logvar_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The [mu, log sigma^2] heads' split of the network output h: mu and sigma = exp(logvar / 2), with
    logvar clamped to [logvar_min, logvar_max]."""
    mu, logvar = h.chunk(2, dim=-1)
    return mu, torch.exp(0.5 * logvar.clamp(logvar_min, logvar_max))


@dataclass(frozen=True)
class LearnedGaussianLikelihood:
    """p(x|z) = N(x; mu, diag exp(logvar)); the decoder outputs [mu, logvar] per dimension.

    logvar is clamped to [logvar_min, logvar_max] so that the density cannot diverge on
    near-constant pixels (the gradient of a clamped entry is zero, which stops the runaway).
    squash=True: mu = sigmoid(h_mu), in (0, 1) like [0, 1]-scaled data: the paper's Frey Face
    decoder (Section 5).
    """

    logvar_min: float = -9.0
    logvar_max: float = 6.0
    squash: bool = False
    outputs_per_dim: int = 2

    def __call__(self, h: torch.Tensor) -> Distribution:
        mu, scale = _mean_and_scale(h, self.logvar_min, self.logvar_max)
        mu = torch.sigmoid(mu) if self.squash else mu
        return Independent(Normal(mu, scale, validate_args=False), 1)


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
    outputs_per_dim: int = 2

    def __call__(self, h: torch.Tensor) -> Distribution:
        mu, scale = _mean_and_scale(h, self.logvar_min, self.logvar_max)
        return Independent(StudentT(torch.full_like(mu, self.df), mu, scale, validate_args=False), 1)


def _with_background(log_normal: torch.Tensor, x: torch.Tensor, weight: float) -> torch.Tensor:
    """log[(1 - w) N + w Cauchy(x; 0, 1)] per element, from log N: the contaminated Gaussian's density."""
    log_background = math.log(weight / math.pi) - torch.log1p(x * x)
    return torch.logaddexp(log_normal + math.log1p(-weight), log_background)


class ContaminatedNormal(Distribution):
    """Per element, (1 - w) N(loc, scale^2) + w Cauchy(0, 1): a Gaussian with a fixed heavy-tailed
    background that explains the values the Gaussian cannot (Huber's epsilon-contamination model).

    The mixture has no mean (the Cauchy has none): `mean` is the Gaussian component's `loc`, the value
    a reconstruction shows. `sample` draws from the mixture.
    """

    arg_constraints: dict = {}
    support = constraints.real

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, weight: float):
        self.loc, self.scale, self.weight = loc, scale, float(weight)
        super().__init__(loc.shape, validate_args=False)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return _with_background(Normal(self.loc, self.scale, validate_args=False).log_prob(x), x, self.weight)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    def sample(
        self, sample_shape: torch.Size | tuple[int, ...] = (), generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draws of shape sample_shape + loc.shape, reproducible through `generator`."""
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.loc.shape
            kw = {"generator": generator, "device": self.loc.device, "dtype": self.loc.dtype}
            clean = self.loc + self.scale * torch.randn(shape, **kw)
            u = torch.rand((2, *shape), **kw)
            background = torch.tan(math.pi * (u[0] - 0.5))  # Cauchy(0, 1) by inversion
            return torch.where(u[1] < self.weight, background, clean)


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
    does explain costs about what it costs under `gaussian-learned`.
    """

    outlier_weight: float = 0.2
    logvar_min: float = -9.0
    logvar_max: float = 6.0
    outputs_per_dim: int = 2

    def __call__(self, h: torch.Tensor) -> Distribution:
        mu, scale = _mean_and_scale(h, self.logvar_min, self.logvar_max)
        return Independent(ContaminatedNormal(mu, scale, self.outlier_weight), 1)

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over the features, (...,), in fp32 without building the distribution."""
        h = h.float() if h.dtype in (torch.float16, torch.bfloat16) else h
        mu, logvar = h.chunk(2, dim=-1)
        logvar = logvar.clamp(self.logvar_min, self.logvar_max)
        x = x.to(h.dtype)
        log_normal = -0.5 * ((x - mu).square() * torch.exp(-logvar) + logvar + math.log(2 * math.pi))
        return _with_background(log_normal, x, self.outlier_weight).sum(-1)


@dataclass(frozen=True)
class PoissonLikelihood:
    """p(x|z) = prod_d Poisson(x_d; rate_d), rate_d = softplus(h_d) + min_rate, for counts.

    softplus rather than exp: the rate grows linearly in h (no overflow, bounded gradients for large
    counts), and the floor `min_rate` keeps log(rate) finite when h is very negative, so that a
    count x_d > 0 under a collapsed rate costs a large but finite number of nats. The encoder sees
    log(1 + x) (`encoder_input`), not the raw counts.
    """

    min_rate: float = 1e-6
    outputs_per_dim: int = 1

    def rate(self, h: torch.Tensor) -> torch.Tensor:
        return F.softplus(h) + self.min_rate

    def __call__(self, h: torch.Tensor) -> Distribution:
        return Independent(Poisson(self.rate(h), validate_args=False), 1)

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """What q(z|x) sees: log(1 + x), so that large counts cannot overflow the encoder's variance."""
        return torch.log1p(F.relu(x))


class CategoricalIndex(Categorical):
    """A categorical over class indices 0..C-1 whose `mean` is the expected index sum_c c p_c (torch's
    Categorical has no mean) and whose `mode` is the most probable class."""

    @property
    def mean(self) -> torch.Tensor:
        c = torch.arange(self.probs.shape[-1], device=self.probs.device, dtype=self.probs.dtype)
        return (self.probs * c).sum(-1)


@dataclass(frozen=True)
class CategoricalLikelihood:
    """p(x|z) = prod_d Categorical(x_d; softmax(h_d)) for D columns of class indices 0..C-1.

    The decoder outputs C logits per column, class-major like the other heads ([logit of class 0 of
    every column, logit of class 1 of every column, ...]); `decode(z)` has event shape (D,).
    """

    categories: int = 2
    outputs_per_dim: int = 2

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(..., C * D) network output -> (..., D, C) logits."""
        return h.unflatten(-1, (self.categories, -1)).transpose(-1, -2)

    def __call__(self, h: torch.Tensor) -> Distribution:
        return Independent(CategoricalIndex(logits=self.logits(h), validate_args=False), 1)


class ColumnGroups(Distribution):
    """p(x|z) over D columns made of independent groups of consecutive columns, each its own distribution
    with event shape (n_g,): log_prob sums the groups' log-probabilities, mean and sample concatenate."""

    arg_constraints: dict = {}

    def __init__(self, parts: list[Distribution]):
        self.parts = parts
        self.sizes = [p.event_shape[0] for p in parts]
        super().__init__(parts[0].batch_shape, torch.Size([sum(self.sizes)]), validate_args=False)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return sum(p.log_prob(xg) for p, xg in zip(self.parts, x.split(self.sizes, -1)))

    @property
    def mean(self) -> torch.Tensor:
        return torch.cat([p.mean for p in self.parts], -1)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        return torch.cat([p.sample(sample_shape).to(self.parts[0].mean.dtype) for p in self.parts], -1)


@dataclass(frozen=True)
class MixedLikelihood:
    """One likelihood per group of consecutive columns (`ModelConfig.columns`, e.g. "gaussian-learned:3,
    categorical4:1,poisson:2"): the decoder output is the groups' outputs one after the other, each
    laid out as its head expects, and `decode(z)` is a `ColumnGroups` distribution with event shape (D,)."""

    groups: tuple[tuple[object, int], ...]  # (head, number of columns)
    outputs_per_dim: int = 1  # not used: `outputs` is the decoder's output size

    @property
    def outputs(self) -> int:
        return sum(head.outputs_per_dim * n for head, n in self.groups)

    def _split(self, h: torch.Tensor) -> list[torch.Tensor]:
        return list(h.split([head.outputs_per_dim * n for head, n in self.groups], -1))

    def __call__(self, h: torch.Tensor) -> Distribution:
        return ColumnGroups([head(hg) for (head, _), hg in zip(self.groups, self._split(h))])

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """Each group's `encoder_input` (log(1 + x) for counts), the others as they are."""
        xs = x.split([n for _, n in self.groups], -1)
        return torch.cat(
            [getattr(head, "encoder_input", lambda u: u)(xg) for (head, _), xg in zip(self.groups, xs)], -1
        )


def _column_head(kind: str, categories: int, c: ModelConfig):
    if kind == "categorical":
        return CategoricalLikelihood(categories, categories)
    return LIKELIHOODS[kind](c)


def make_mixed(c: ModelConfig) -> MixedLikelihood:
    """The `mixed` head of `c.columns`; ValueError when the groups do not cover the data's columns."""
    from .config import parse_columns  # here, not above: config imports (through the model) this module

    groups = parse_columns(c.columns)
    n = sum(count for _, count, _ in groups)
    if n != c.data_dim:
        raise ValueError(f"columns names {n} columns; the data has {c.data_dim}")
    return MixedLikelihood(tuple((_column_head(kind, cats, c), count) for kind, count, cats in groups))


LIKELIHOODS = {
    "bernoulli": lambda c: BernoulliLikelihood(),
    "gaussian": lambda c: GaussianLikelihood(sigma=c.sigma),
    "gaussian-learned": lambda c: LearnedGaussianLikelihood(c.logvar_min, c.logvar_max),
    "gaussian-learned-sigmoid": lambda c: LearnedGaussianLikelihood(c.logvar_min, c.logvar_max, squash=True),
    "student-t": lambda c: StudentTLikelihood(c.df, c.logvar_min, c.logvar_max),
    "gaussian-robust": lambda c: RobustGaussianLikelihood(c.outlier_weight, c.logvar_min, c.logvar_max),
    "poisson": lambda c: PoissonLikelihood(),
    "categorical": lambda c: CategoricalLikelihood(c.categories, c.categories),
    "mixed": make_mixed,
}


def make_likelihood(config: ModelConfig):
    """The decoder head named by `config.likelihood`."""
    return LIKELIHOODS[config.likelihood](config)
