"""The decoder heads of discrete data: `BernoulliLikelihood` (values in [0, 1]: binary pixels or grey
levels), `PoissonLikelihood` (counts) and `CategoricalLikelihood` (class indices). None is location-scale.
Each implements the whole `aevb.likelihoods.Likelihood` interface; the registry there names them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Distribution, Independent, Poisson

from .distributions import CategoricalIndex
from .heads_shared import fp32, identity, log_prob_via_distribution, not_location_scale, support_message


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
