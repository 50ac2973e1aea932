"""The variational auto-encoder: prior p(z), encoder q(z|x), decoder p(x|z), all as distributions."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal, Poisson

from . import priors
from .config import ModelConfig
from .likelihoods import ColumnGroups, make_likelihood
from .nets import ARCHS, init_normal_
from .priors import PRIORS


class VAE(nn.Module):
    """Kingma & Welling (2013): z ~ N(0, I), x | z ~ p(x | f(z; theta)), q(z|x) = N(mu(x), diag sigma^2(x)).

    Inputs x have shape (B, *data_shape) or (B, D); the networks see them flattened to (B, D).
    The networks are `config.arch` (aevb.nets.ARCHS) and p(z) is `config.prior` (aevb.priors.PRIORS).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.likelihood = make_likelihood(config)
        opd = self.likelihood.outputs_per_dim
        # encoder -> [mu, logvar]; decoder -> the likelihood head's parameters
        out = getattr(self.likelihood, "outputs", opd * config.data_dim)  # `mixed`: a sum over its column groups
        self.encoder, self.decoder = ARCHS[config.arch](config, 2 * config.latent_dim, out, opd)
        if config.init == "normal":
            init_normal_(self, config.init_std)
        self.prior_net = PRIORS[config.prior](config)  # created last: N(0, I) has no parameters

    @property
    def analytic_kl(self) -> bool:
        """Whether KL(q(z|x) || p(z)) has the closed form of `aevb.objectives.gaussian_kl` (p = N(0, I))."""
        return self.prior_net.analytic_kl

    def prior(self) -> Distribution:
        """p(z), event shape (latent_dim,): N(0, I), or the mixture `config.prior` names."""
        return self.prior_net(self._device(), self.encode)

    def encode(self, x: torch.Tensor) -> Independent:
        """q(z|x): batch shape (B,), event shape (latent_dim,). Its `.mean` is the posterior mean.
        A likelihood head with `encoder_input(x)` says what the encoder sees (poisson: log(1 + x))."""
        x = x.reshape(x.shape[0], -1)
        prep = getattr(self.likelihood, "encoder_input", None)  # e.g. log(1 + counts) for poisson
        mu, logvar = self.encoder(x if prep is None else prep(x)).chunk(2, dim=-1)
        return Independent(Normal(mu, torch.exp(0.5 * logvar), validate_args=False), 1)

    def decode(self, z: torch.Tensor) -> Distribution:
        """p(x|z): batch shape z.shape[:-1], event shape (D,) over the flattened data."""
        return self.likelihood(self.decoder(z))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True) -> torch.Tensor:
        """n new data points, shape (n, *data_shape): E[x|z] for z ~ p(z), or a draw x ~ p(x|z)."""
        z = priors.draw(self.prior(), n, generator, self._device())  # (n, Dz)
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
    if isinstance(p, ColumnGroups):
        return torch.cat([draw(part, generator).to(p.mean.dtype) for part in p.parts], -1)
    base = p.base_dist if isinstance(p, Independent) else p
    if isinstance(base, Normal):
        return base.loc + base.scale * torch.randn(base.loc.shape, generator=generator, device=base.loc.device)
    if isinstance(base, Poisson):
        return torch.poisson(base.rate, generator=generator)
    if isinstance(base, Categorical):
        probs = base.probs
        x = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
        return x.reshape(probs.shape[:-1]).to(probs.dtype)
    return torch.bernoulli(base.probs, generator=generator)
