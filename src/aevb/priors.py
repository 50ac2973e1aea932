"""Priors p(z) as small modules that return torch distributions, event shape (latent_dim,).

- normal: N(0, I), no parameters (the paper's prior; the KL has a closed form).
- mog:    a learned mixture of K diagonal Gaussians, sum_k pi_k N(z; m_k, diag s_k^2).
- vamp:   the VampPrior (Tomczak & Welling, 2018): p(z) = 1/K sum_k q(z | u_k), the encoder's
          posterior at K learned pseudo-inputs u_k, so prior and posterior share the encoder.
The mixtures have no closed-form KL(q || p): the objectives estimate it by Monte Carlo, and
`log_weights` uses their exact log p(z), so importance-sampled log p(x) stays exact in expectation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal


class StandardNormal(nn.Module):
    """p(z) = N(0, I). No parameters, so old runs' weights load unchanged."""

    analytic_kl = True  # KL(q || p) in closed form (aevb.objectives.gaussian_kl)

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def forward(self, device: torch.device, encode=None) -> Distribution:
        zeros = torch.zeros(self.latent_dim, device=device)
        return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1)


def _mixture(logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> Distribution:
    comp = Independent(Normal(loc, scale, validate_args=False), 1)  # batch (K,), event (Dz,)
    return MixtureSameFamily(Categorical(logits=logits, validate_args=False), comp, validate_args=False)


class GaussianMixture(nn.Module):
    """p(z) = sum_k softmax(logits)_k N(z; loc_k, diag exp(2 log_scale_k)), all learned.

    The means start spread as draws from N(0, I) and the scales at 1, so at initialisation p(z)
    covers what N(0, I) covers."""

    analytic_kl = False

    def __init__(self, latent_dim: int, components: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(torch.randn(components, latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(components, latent_dim))

    def forward(self, device: torch.device, encode=None) -> Distribution:
        return _mixture(self.logits, self.loc, self.log_scale.exp())


class VampPrior(nn.Module):
    """p(z) = 1/K sum_k q(z | u_k) with K learned pseudo-inputs u_k (Tomczak & Welling 2018, eq. 9).

    The pseudo-inputs start as small noise around 0.5 (the middle of [0, 1]-scaled data)."""

    analytic_kl = False

    def __init__(self, data_dim: int, components: int):
        super().__init__()
        self.pseudo_inputs = nn.Parameter(0.5 + 0.01 * torch.randn(components, data_dim))

    def forward(self, device: torch.device, encode: Callable[[torch.Tensor], Independent]) -> Distribution:
        q = encode(self.pseudo_inputs)  # batch (K,), event (Dz,)
        loc, scale = q.base_dist.loc.float(), q.base_dist.scale.float()
        return _mixture(torch.zeros(loc.shape[0], device=loc.device), loc, scale)


PRIORS: dict[str, Callable[..., nn.Module]] = {
    "normal": lambda c: StandardNormal(c.latent_dim),
    "mog": lambda c: GaussianMixture(c.latent_dim, c.prior_components),
    "vamp": lambda c: VampPrior(c.data_dim, c.prior_components),
}


def draw(prior: Distribution, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """n draws z ~ p(z), (n, latent_dim), reproducible through `generator` (torch.distributions' own
    `sample` takes none). For N(0, I) these are exactly torch.randn(n, latent_dim, generator)."""
    if isinstance(prior, MixtureSameFamily):
        probs = prior.mixture_distribution.probs.detach()
        idx = torch.multinomial(probs, n, replacement=True, generator=generator)  # (n,)
        comp = prior.component_distribution.base_dist
        loc, scale = comp.loc.detach()[idx], comp.scale.detach()[idx]
        return loc + scale * torch.randn(loc.shape, generator=generator, device=loc.device)
    base = prior.base_dist
    return torch.randn((n, *base.loc.shape), generator=generator, device=device or base.loc.device)
