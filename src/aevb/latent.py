"""The latent structure as the objectives see it: q(z|x) draws z from standard normal noise and scores it.

An objective, the evaluation, DDP or the anomaly detector never reads q's parameters: they ask

- `model.noise_dim`: standard normal numbers per draw of z (the trainer and `evaluate` draw them, so
  that data-parallel ranks and re-batched evaluations see the same noise);
- `q = model.encode(x, y)`, a posterior with `q.mean` (the code for plots), `q.rsample_from(eps)`
  (z from noise eps (..., B, noise_dim), differentiable: the reparameterisation trick),
  `q.rsample_with_log_prob(eps)` (z and log q(z|x) (..., B) of those same draws: a flow posterior
  computes its log-density along the draw, where scoring a given z would need the flow's inverse) and
  `q.log_prob(z)` (log q(z|x) of any z, where the posterior can score one) and, optionally,
  `q.detached()` (the same posterior with its parameters cut from the graph: `q.detached().log_prob(z)`
  has the numbers of `q.log_prob(z)` and a gradient only along z's own path, none to the encoder
  through q's parameters, the parents of a stack's layers included; what the stl and dreg gradient
  estimators of `aevb.gradients` need; a posterior without it (the flow's) cannot use them, and
  `--gradient stl|dreg` is then a one-line error);
- `model.log_prior(z)` (log p(z)), `model.kl(q)` (KL(q || p) in closed form, or None where there is
  none), `model.kl_along(q, eps)` (a stack's draws and per-draw KL with each layer's closed form given the
  layers it is conditioned on, where it has one; None for one layer) and `model.sample_prior(n, generator)`
  (z ~ p(z): every prior draw goes through the model's prior, N(0, I) or the learned mixtures of `aevb.priors`).

`DiagonalGaussian` is the one-layer posterior of Kingma & Welling (2013). A stack of latent layers
(`aevb.hierarchy`: `BottomUp`, `Ladder`) or a flow posterior is another posterior object with the same
members (and the model's `log_prior` summing its layers' conditionals), with z the layers' values side by
side, bottom first; `model.top(z)` / `model.from_top(z_L)` take and complete the top layer that plots show.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Independent, Normal


def gaussian_kl(q: Independent) -> torch.Tensor:
    """KL(N(mu, diag sigma^2) || N(0, I)) = -1/2 sum(1 + log sigma^2 - mu^2 - sigma^2), (B,).

    Kingma & Welling (2013), Appendix B; the closed form behind SGVB estimator B (eq. 10).
    """
    mu, sigma = q.base_dist.loc, q.base_dist.scale
    # a - 2 log(sigma) as one sub(alpha=2): 2x is exact, so these are the numbers of the formula above
    return 0.5 * torch.sub(mu.square() + sigma.square() - 1.0, torch.log(sigma), alpha=2).sum(-1)


def gaussian_kl_per_dim(q: Independent, z: torch.Tensor, estimator: str = "analytic") -> torch.Tensor:
    """KL(q(z_j|x) || N(0, 1)) of each latent dimension j, (B, Dz) nats, for the prior N(0, I):
    in closed form (estimator B), or log q(z_j|x) - log N(z_j; 0, 1) averaged over the draws z (L, B, Dz).
    The sum over j is `gaussian_kl(q)` (or estimator A's KL)."""
    if estimator == "analytic":
        mu, sigma = q.base_dist.loc, q.base_dist.scale
        return 0.5 * (mu.square() + sigma.square() - 1.0 - 2.0 * torch.log(sigma))
    return (q.base_dist.log_prob(z) + 0.5 * z.square() + 0.5 * math.log(2 * math.pi)).mean(0)


class DiagonalGaussian(Independent):
    """q(z|x) = N(mu, diag sigma^2): batch shape (B,), event shape (Dz,); a torch distribution (`mean`,
    `log_prob`, `base_dist`) that also draws from given noise (`rsample_from`)."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor):
        super().__init__(Normal(loc, scale, validate_args=False), 1)

    @property
    def noise_dim(self) -> int:
        """Standard normal numbers per draw: Dz."""
        return self.base_dist.loc.shape[-1]

    def rsample_from(self, eps: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps, (..., B, Dz), differentiable in q's parameters (SGVB). eps: (..., B, Dz)."""
        return self.base_dist.loc + self.base_dist.scale * eps

    def rsample_with_log_prob(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, log q(z|x)) for z = `rsample_from(eps)`: (..., B, Dz) and (..., B) nats."""
        z = self.rsample_from(eps)
        return z, self.log_prob(z)

    def detached(self) -> DiagonalGaussian:
        """N(mu, diag sigma^2) with mu and sigma cut from the graph: log_prob(z) has the same numbers,
        and a gradient only along z's path (the stl and dreg estimators of `aevb.gradients`)."""
        return DiagonalGaussian(self.base_dist.loc.detach(), self.base_dist.scale.detach())

    def kl_standard_normal(self) -> torch.Tensor:
        """KL(q || N(0, I)) in closed form, (B,) nats (`gaussian_kl`)."""
        return gaussian_kl(self)

    def kl_per_dim(self, z: torch.Tensor, estimator: str = "analytic") -> torch.Tensor:
        """KL(q(z_j|x) || N(0, 1)) per latent dimension, (B, Dz) nats (`gaussian_kl_per_dim`)."""
        return gaussian_kl_per_dim(self, z, estimator)
