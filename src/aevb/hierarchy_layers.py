"""One layer of a stack of latent layers (`aevb.hierarchy`): its diagonal Gaussian as a posterior
(`LayerGaussian`, with the layer's IAF on top when the stack has flows), the split of a net's output into
its parameters, and the Gaussian densities and closed-form KL the posteriors (`aevb.hierarchy_posteriors`)
and the generative conditionals (`aevb.hierarchy`) are scored with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.distributions import Normal

from .flows import IAF, FlowPosterior


def split_gaussian(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, log sigma^2) of a net's output [mu | log sigma^2], (..., 2d) -> 2 x (..., d), in fp32
    when autocast ran the net in bf16."""
    if out.dtype in (torch.float16, torch.bfloat16):
        out = out.float()
    mu, logvar = out.chunk(2, dim=-1)
    return mu, logvar


def split_with_context(out: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mu, log sigma^2, h) of an output [mu | log sigma^2 | h] (..., 2d + context), fp32 (`split_gaussian`)."""
    if out.dtype in (torch.float16, torch.bfloat16):
        out = out.float()
    mu_logvar, h = out.split((out.shape[-1] - context, context), dim=-1)
    return (*split_gaussian(mu_logvar), h)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last dimension, z.shape[:-1] nats."""
    return Normal(mu, torch.exp(0.5 * logvar), validate_args=False).log_prob(z).sum(-1)


def kl_normal(
    mu: torch.Tensor, logvar: torch.Tensor, mu_p: torch.Tensor | None = None, logvar_p: torch.Tensor | None = None
) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(mu_p, diag exp(logvar_p))) summed over the last dimension, (...,) nats:
    1/2 sum(logvar_p - logvar + (exp(logvar) + (mu - mu_p)^2) / exp(logvar_p) - 1); against N(0, I) without p."""
    if mu_p is None:
        return 0.5 * (mu.square() + torch.exp(logvar) - 1.0 - logvar).sum(-1)
    return 0.5 * (logvar_p - logvar + (torch.exp(logvar) + (mu - mu_p).square()) * torch.exp(-logvar_p) - 1.0).sum(-1)


def frozen(net: nn.Module) -> Callable[..., torch.Tensor]:
    """net's forward with its parameters and buffers detached (no copy): the same numbers, and a graph
    only through the inputs. What `detached()` posteriors run their nets with."""
    tensors = {n: t.detach() for n, t in (*net.named_parameters(), *net.named_buffers())}
    return lambda *inputs: torch.func.functional_call(net, tensors, inputs)


class LayerGaussian:
    """One layer's Gaussian N(mu, diag exp(logvar)), (..., B, d), as a posterior (the members of
    `aevb.latent.DiagonalGaussian` a layer uses): what a layer's flow, if any, sits on."""

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor):
        self.mu, self.logvar = mu, logvar

    @property
    def noise_dim(self) -> int:
        return self.mu.shape[-1]

    @property
    def mean(self) -> torch.Tensor:
        return self.mu

    @property
    def stddev(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def rsample_from(self, eps: torch.Tensor) -> torch.Tensor:
        return self.mu + torch.exp(0.5 * self.logvar) * eps

    def rsample_with_log_prob(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.rsample_from(eps)
        return z, self.log_prob(z)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return log_normal(z, self.mu, self.logvar)


def layer_q(
    flows: Sequence[IAF] | None, i: int, mu: torch.Tensor, logvar: torch.Tensor, context: torch.Tensor | None
) -> LayerGaussian | FlowPosterior:
    """Layer l = i + 1's q: its Gaussian, with the layer's IAF on top (context (B, C)) when the stack has flows."""
    q = LayerGaussian(mu, logvar)
    return q if flows is None else flows[i].posterior(q, context)
