"""Decoder heads: turn the decoder network's output h into p(x|z), a torch distribution.

Every head implements the whole `Likelihood` protocol below; `LIKELIHOODS` maps each name to a factory
taking the `ModelConfig`, and is the only list of names: the config's checks, the CLI's choices, the
column kinds of `mixed` and the anomaly detector's likelihoods are read from it. Adding a likelihood is
one class and one entry there. Heads share behaviour through the module-level helpers they call
(`log_prob_via_distribution`, `sample_normal`, `check_real`, `rescale_normal`, ...), not through a base class.

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

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Distribution, Independent, Normal, Poisson, StudentT

from .distributions import CategoricalIndex, ColumnGroups, ContaminatedNormal, with_background

if TYPE_CHECKING:
    from .config import ModelConfig


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


# --- helpers the heads share --------------------------------------------------------------------


def fp32(h: torch.Tensor) -> torch.Tensor:
    """h in fp32 when autocast made it fp16/bf16 (densities are computed in fp32), else h itself."""
    return h.float() if h.dtype in (torch.float16, torch.bfloat16) else h


def log_prob_via_distribution(head: Likelihood, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`head(h).log_prob(x)` with h in fp32, (...,) nats: `log_prob` of a head without a fused formula."""
    return head(fp32(h)).log_prob(x)


def sample_normal(p: Independent, generator: torch.Generator | None) -> torch.Tensor:
    """loc + scale * eps, eps ~ N(0, 1) from `generator`: one draw of Independent(Normal), shaped like loc."""
    base = p.base_dist
    return base.loc + base.scale * torch.randn(base.loc.shape, generator=generator, device=base.loc.device)


def sample_student_t(p: Independent, generator: torch.Generator | None) -> torch.Tensor:
    """One draw of Independent(StudentT), shaped like loc. torch draws its chi-square from the global RNG,
    so that RNG is seeded from `generator` inside a fork (the caller's global state is left alone)."""
    base = p.base_dist
    seed = int(torch.randint(2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[] if base.loc.device.type == "cpu" else [base.loc.device]):
        torch.manual_seed(seed)
        return base.sample()


def rescale_normal(p: Independent, shift: torch.Tensor, scale: torch.Tensor) -> Independent:
    """Independent(Normal) of shift + scale * x for x ~ p = Independent(Normal): loc and scale move."""
    base = p.base_dist
    return Independent(Normal(shift + scale * base.loc, scale * base.scale, validate_args=False), 1)


def rescale_student_t(p: Independent, shift: torch.Tensor, scale: torch.Tensor) -> Independent:
    """Independent(StudentT) of shift + scale * x for x ~ p = Independent(StudentT): loc and scale move, df stays."""
    base = p.base_dist
    return Independent(StudentT(base.df, shift + scale * base.loc, scale * base.scale, validate_args=False), 1)


def not_location_scale(head: Likelihood) -> Distribution:
    """What `rescaled` does for a head whose family is not location-scale: raise ValueError."""
    raise ValueError(f"{type(head).__name__} is not a location-scale family: its data cannot be standardised")


def identity(x: torch.Tensor) -> torch.Tensor:
    """`encoder_input` of the heads whose encoder sees x as it is."""
    return x


def support_message(x: torch.Tensor, ok: torch.Tensor, first_feature: int, what: str, need: str) -> str | None:
    """None when `ok` (N, n) is all True, else "has {what}: the first is the value v (row r, feature c);
    {need}" for the columns x (N, n), the first of which is feature `first_feature`; `what` names them
    as {columns} ("values in {columns} that are not counts": "column(s) a..b")."""
    if bool(ok.all()):
        return None
    row, col = (int(i) for i in (~ok).nonzero()[0])
    cols = f"column(s) {first_feature}..{first_feature + x.shape[-1] - 1}"
    where = f"the value {x[row, col].item():g} (row {row}, feature {first_feature + col})"
    return f"has {what.format(columns=cols)}: the first is {where}; {need}"


def check_real(x: torch.Tensor, first_feature: int = 0) -> str | None:
    """The support check of the heads of real values: every value finite."""
    return support_message(
        x,
        torch.isfinite(x),
        first_feature,
        "values in {columns} that are not finite",
        "this likelihood models real numbers",
    )


def _mean_and_scale(h: torch.Tensor, logvar_min: float, logvar_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The [mu, log sigma^2] heads' split of the network output h: mu and sigma = exp(logvar / 2), with
    logvar clamped to [logvar_min, logvar_max]."""
    mu, logvar = h.chunk(2, dim=-1)
    return mu, torch.exp(0.5 * logvar.clamp(logvar_min, logvar_max))


# --- the heads -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BernoulliLikelihood:
    """p(x|z) = prod_d Bernoulli(x_d; sigmoid(h_d)), parameterised by logits (no sigmoid + BCE)."""

    location_scale = False

    def outputs(self, d: int) -> int:
        return d

    def __call__(self, h: torch.Tensor) -> Distribution:
        # grey levels in [0, 1] are allowed with --binarize none
        return Independent(Bernoulli(logits=h, validate_args=False), 1)

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """sum_d x_d h_d - softplus(h_d), (...,) for h (..., B, D) and x (B, D) or (..., B, D): the
        Bernoulli log-likelihood on logits, in three elementwise passes (softplus; softplus - x h
        in one addcmul; the sum) that broadcast x over the samples. (An einsum for x.h becomes a
        batched matrix-vector product, several times slower on a CPU, and a bf16 one under autocast.)
        x may be grey levels."""
        h = fp32(h)
        return -torch.addcmul(F.softplus(h), h, x.to(h.dtype), value=-1).sum(-1)

    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.bernoulli(self(h).base_dist.probs, generator=generator)

    encoder_input = staticmethod(identity)

    def check(self, x: torch.Tensor, first_feature: int = 0) -> str | None:
        ok = (x >= 0) & (x <= 1)
        if bool(ok.all()):
            return None
        return support_message(
            x,
            ok,
            first_feature,
            f"values outside [0, 1] ({x.min().item():g} .. {x.max().item():g}) in {{columns}}",
            "the bernoulli likelihood needs [0, 1] data: rescale it or use --likelihood gaussian / gaussian-learned",
        )

    def rescaled(self, h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> Distribution:
        return not_location_scale(self)


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


@dataclass(frozen=True)
class PoissonLikelihood:
    """p(x|z) = prod_d Poisson(x_d; rate_d), rate_d = softplus(h_d) + min_rate, for counts.

    softplus rather than exp: the rate grows linearly in h (no overflow, bounded gradients for large
    counts), and the floor `min_rate` keeps log(rate) finite when h is very negative, so that a
    count x_d > 0 under a collapsed rate costs a large but finite number of nats. The encoder sees
    log(1 + x) (`encoder_input`), not the raw counts.
    """

    min_rate: float = 1e-6
    location_scale = False

    def outputs(self, d: int) -> int:
        return d

    def rate(self, h: torch.Tensor) -> torch.Tensor:
        return F.softplus(h) + self.min_rate

    def __call__(self, h: torch.Tensor) -> Distribution:
        return Independent(Poisson(self.rate(h), validate_args=False), 1)

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return log_prob_via_distribution(self, h, x)

    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.poisson(self(h).base_dist.rate, generator=generator)

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """What q(z|x) sees: log(1 + x), so that large counts cannot overflow the encoder's variance."""
        return torch.log1p(F.relu(x))

    def check(self, x: torch.Tensor, first_feature: int = 0) -> str | None:
        ok = torch.isfinite(x) & (x == x.round()) & (x >= 0)
        return support_message(
            x,
            ok,
            first_feature,
            "values in {columns} that are not counts",
            "the poisson likelihood needs counts (whole numbers >= 0)",
        )

    def rescaled(self, h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> Distribution:
        return not_location_scale(self)


@dataclass(frozen=True)
class CategoricalLikelihood:
    """p(x|z) = prod_d Categorical(x_d; softmax(h_d)) for D columns of class indices 0..C-1.

    The decoder outputs C logits per column, class-major like the other heads ([logit of class 0 of
    every column, logit of class 1 of every column, ...]); `decode(z)` has event shape (D,).
    """

    categories: int = 2
    location_scale = False

    def outputs(self, d: int) -> int:
        return self.categories * d

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(..., C * D) network output -> (..., D, C) logits."""
        return h.unflatten(-1, (self.categories, -1)).transpose(-1, -2)

    def __call__(self, h: torch.Tensor) -> Distribution:
        return Independent(CategoricalIndex(logits=self.logits(h), validate_args=False), 1)

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return log_prob_via_distribution(self, h, x)

    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        probs = self(h).base_dist.probs  # (..., D, C)
        x = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
        return x.reshape(probs.shape[:-1]).to(probs.dtype)

    encoder_input = staticmethod(identity)

    def check(self, x: torch.Tensor, first_feature: int = 0) -> str | None:
        c = self.categories
        return support_message(
            x,
            (x == x.round()) & (x >= 0) & (x <= c - 1),
            first_feature,
            f"values in {{columns}} that are not class indices 0..{c - 1} (categorical{c})",
            f"the categorical likelihood needs class indices 0..{c - 1} (C = {c})",
        )

    def rescaled(self, h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> Distribution:
        return not_location_scale(self)


@dataclass(frozen=True)
class MixedLikelihood:
    """One likelihood per group of consecutive columns (`ModelConfig.columns`, e.g. "gaussian-learned:3,
    categorical4:1,poisson:2"): the decoder output is the groups' outputs one after the other, each
    laid out as its head expects, and `decode(z)` is a `ColumnGroups` distribution with event shape (D,).
    Every member is the groups' own, split and joined; it is not location-scale as a whole (the anomaly
    detector rescales the columns of its location-scale groups)."""

    groups: tuple[tuple[Likelihood, int], ...]  # (head, number of columns)
    location_scale = False

    def outputs(self, d: int) -> int:
        if d != sum(n for _, n in self.groups):
            raise ValueError(f"the column groups cover {sum(n for _, n in self.groups)} columns, not {d}")
        return sum(head.outputs(n) for head, n in self.groups)

    def _split(self, h: torch.Tensor) -> list[torch.Tensor]:
        return list(h.split([head.outputs(n) for head, n in self.groups], -1))

    def _columns(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(x.split([n for _, n in self.groups], -1))

    def __call__(self, h: torch.Tensor) -> Distribution:
        return ColumnGroups([head(hg) for (head, _), hg in zip(self.groups, self._split(h))])

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return log_prob_via_distribution(self, h, x)

    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The groups' draws, in order from the one generator, concatenated in h's dtype."""
        parts = [head.sample(hg, generator).to(h.dtype) for (head, _), hg in zip(self.groups, self._split(h))]
        return torch.cat(parts, -1)

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """Each group's `encoder_input` (log(1 + x) for counts), the others as they are."""
        return torch.cat([head.encoder_input(xg) for (head, _), xg in zip(self.groups, self._columns(x))], -1)

    def check(self, x: torch.Tensor, first_feature: int = 0) -> str | None:
        """The first group's message whose columns are not all in its support, or None."""
        start = first_feature
        for (head, n), xg in zip(self.groups, self._columns(x)):
            problem = head.check(xg, start)
            if problem is not None:
                return problem
            start += n
        return None

    def rescaled(self, h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> Distribution:
        return not_location_scale(self)


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
