"""The variational auto-encoder: prior p(z), encoder q(z|x), decoder p(x|z), all as distributions."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from .config import ModelConfig
from .likelihoods import make_likelihood
from .nets import MLP, init_normal_


class VAE(nn.Module):
    """Kingma & Welling (2013): z ~ N(0, I), x | z ~ p(x | f(z; theta)), q(z|x) = N(mu(x), diag sigma^2(x)).

    Inputs x have shape (B, *data_shape) or (B, D); the networks see them flattened to (B, D).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.likelihood = make_likelihood(config)
        d, h, a = config.data_dim, config.hidden, config.activation
        self.encoder = MLP(d, h, 2 * config.latent_dim, a)  # -> [mu, logvar]
        self.decoder = MLP(config.latent_dim, tuple(reversed(h)), self.likelihood.outputs_per_dim * d, a)
        if config.init == "normal":
            init_normal_(self, config.init_std)

    def prior(self) -> Distribution:
        """p(z) = N(0, I), event shape (latent_dim,)."""
        zeros = torch.zeros(self.config.latent_dim, device=self._device())
        return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1)

    def encode(self, x: torch.Tensor) -> Independent:
        """q(z|x): batch shape (B,), event shape (latent_dim,). Its `.mean` is the posterior mean."""
        mu, logvar = self.encoder(x.reshape(x.shape[0], -1)).chunk(2, dim=-1)
        return Independent(Normal(mu, torch.exp(0.5 * logvar), validate_args=False), 1)

    def decode(self, z: torch.Tensor) -> Distribution:
        """p(x|z): batch shape z.shape[:-1], event shape (D,) over the flattened data."""
        return self.likelihood(self.decoder(z))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True) -> torch.Tensor:
        """n new data points, shape (n, *data_shape): E[x|z] for z ~ p(z), or a draw x ~ p(x|z)."""
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=self._device())
        p = self.decode(z)
        x = p.mean if mean else draw(p, generator)
        return x.reshape(n, *self.config.data_shape)

    def _device(self) -> torch.device:
        return next(self.parameters()).device


def reparameterize(q: Independent, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps, differentiable in q's parameters (SGVB). eps: (..., B, latent_dim)."""
    return q.base_dist.loc + q.base_dist.scale * eps


def draw(p: Distribution, generator: torch.Generator | None = None) -> torch.Tensor:
    """One sample from a decoder distribution, reproducible through `generator`."""
    base = p.base_dist if isinstance(p, Independent) else p
    if isinstance(base, Normal):
        return base.loc + base.scale * torch.randn(base.loc.shape, generator=generator, device=base.loc.device)
    return torch.bernoulli(base.probs, generator=generator)
