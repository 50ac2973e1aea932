"""Hierarchical latent variables: a stack of L diagonal-Gaussian layers z_1 .. z_L (`ModelConfig.latents`,
bottom first), behind the interface of `aevb.latent`.

Generative model (Burda et al. 2016, Section 5; Sonderby et al. 2016):
    p(z_L) = N(0, I),  p(z_l | z_{l+1}) = N(mu_l(z_{l+1}), diag sigma_l^2(z_{l+1})),  p(x | z_1).
x <-> z_1 are the model's encoder and decoder (`--hidden`); between z_l and z_{l+1} are the MLPs of
`latent_hidden` (empty: two layers as wide as z_l, Burda et al.'s 100-100 between z_1 = 100 and z_2 = 50),
the decoder's `down` nets mirroring the `up` nets. Two posteriors (`INFERENCE`, `--inference`):

- bottom-up (Burda et al. 2016): q(z_1|x) q(z_2|z_1) ... q(z_L|z_{L-1}), each an MLP of the draw below;
- ladder (Sonderby et al. 2016): a deterministic bottom-up pass gives a Gaussian N(mu^_l, sigma^_l^2) per
  layer (layer l+1's from layer l's [mu^_l, log sigma^_l^2]); then top down q(z_L|x) = N(mu^_L, sigma^_L^2)
  and q(z_l | z_{l+1}, x) is the precision-weighted product of N(mu^_l, sigma^_l^2) and the generative
  p(z_l | z_{l+1}) (the `down` nets, shared with the generative path).

z is all layers side by side, bottom first, (..., sum(latents)); the noise eps has the same layout. The
KL of a stack has no closed form (`kl` is None): the ELBO estimates log q(z|x) - log p(z) by Monte Carlo
from the same draws (estimator A), an unbiased estimate; the importance-sampled log p(x) uses the exact
log q and log p of each draw. `mean` is the pass of conditional means (each layer's Gaussian at the
means of the layers it depends on): E_q[z] exactly for linear nets, the code plotted otherwise.

`q.detached()` (the stl and dreg estimators of `aevb.gradients`) scores a given z with q's parameters phi
cut from the graph but not z's: each layer's Gaussian is recomputed from the (differentiable) layers it
is conditioned on, through the same nets run with detached parameters (`frozen`). log q(z|x) then keeps
its dependence on z, parents included (the path term), and loses the direct one on phi (the score term).
phi is every parameter q's density reads:

- bottom-up: the encoder (q(z_1|x)) and the `up` nets;
- ladder: the encoder and the `up` nets (the bottom-up Gaussians N(mu^_l, sigma^_l^2), which depend on x
  alone and are simply detached) and the `down` nets as they enter q through the precision-weighted
  product. The `down` nets are also theta, in log p(z): that use is not cut, so they receive the usual
  sum_i w~_i d log p(x, z_i)/dtheta at fixed z plus, being on z's path, the stl / dreg path term. The
  score term dropped for them has the same zero mean (k = 1) and the same DReG identity (k > 1) as the
  encoder's: dreg stays unbiased for every parameter, the shared ones included. (On the two-layer
  linear-Gaussian model of the tests, k = 5: dreg's variance is 0.14-0.19 of the standard estimator's for
  the encoder and `up` nets of either stack, about the same, 1.13, for the ladder's `down` nets.)
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.distributions import Normal

from .flows import FLOWS, IAF, FlowPosterior
from .nets import MLP

if TYPE_CHECKING:  # config reads INFERENCE: this module must not import config when it runs
    from .config import ModelConfig


def _gaussian(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, log sigma^2) of a net's output [mu | log sigma^2], (..., 2d) -> 2 x (..., d), in fp32
    when autocast ran the net in bf16."""
    if out.dtype in (torch.float16, torch.bfloat16):
        out = out.float()
    mu, logvar = out.chunk(2, dim=-1)
    return mu, logvar


def _with_context(out: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mu, log sigma^2, h) of an output [mu | log sigma^2 | h] (..., 2d + context), fp32 (`_gaussian`)."""
    if out.dtype in (torch.float16, torch.bfloat16):
        out = out.float()
    mu_logvar, h = out.split((out.shape[-1] - context, context), dim=-1)
    return (*_gaussian(mu_logvar), h)


def _log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last dimension, z.shape[:-1] nats."""
    return Normal(mu, torch.exp(0.5 * logvar), validate_args=False).log_prob(z).sum(-1)


def frozen(net: nn.Module) -> Callable[..., torch.Tensor]:
    """net's forward with its parameters and buffers detached (no copy): the same numbers, and a graph
    only through the inputs. What `detached()` posteriors run their nets with."""
    tensors = {n: t.detach() for n, t in (*net.named_parameters(), *net.named_buffers())}
    return lambda *inputs: torch.func.functional_call(net, tensors, inputs)


def layer_hidden(config: ModelConfig, lower: int) -> tuple[int, ...]:
    """Hidden sizes of the MLP between a layer of size `lower` and the one above: `latent_hidden`, or
    (lower, lower) when it is empty (Burda et al.: z_1 = 100 -> 100 -> 100 -> z_2 = 50)."""
    return tuple(config.latent_hidden) or (lower, lower)


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
        return _log_normal(z, self.mu, self.logvar)


def _layer_q(
    flows: Sequence[IAF] | None, i: int, mu: torch.Tensor, logvar: torch.Tensor, context: torch.Tensor | None
) -> LayerGaussian | FlowPosterior:
    """Layer l = i + 1's q: its Gaussian, with the layer's IAF on top (context (B, C)) when the stack has flows."""
    q = LayerGaussian(mu, logvar)
    return q if flows is None else flows[i].posterior(q, context)


class Hierarchy(nn.Module):
    """Layers 2..L of the stack: `up[i]` (inference, from layer i+1 to layer i+2) and `down[i]`
    (p(z_{i+1} | z_{i+2})) for i = 0 .. L-2. z_1's posterior comes from the model's encoder (module docstring)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.sizes = tuple(config.latents)
        self.inference = config.inference
        # the ladder's bottom-up pass reads layer l's [mu^, log sigma^2]; bottom-up inference reads the draw z_l
        width = 2 if config.inference == "ladder" else 1
        act = config.activation
        # with --flow, layers 2..L get an IAF each (`flows`; z_1's is the model's `flow`) and each `up` net also
        # emits the context h of the layer it gives the Gaussian of (the ladder's: from the bottom-up pass)
        made = [FLOWS[config.flow](config, d) for d in self.sizes[1:]]
        self.context = 0 if made[0] is None else config.flow_context
        self.up = nn.ModuleList(
            MLP(width * lo, layer_hidden(config, lo), 2 * hi + self.context, act)
            for lo, hi in zip(self.sizes, self.sizes[1:])
        )
        self.down = nn.ModuleList(
            MLP(hi, tuple(reversed(layer_hidden(config, lo))), 2 * lo, act)
            for lo, hi in zip(self.sizes, self.sizes[1:])
        )
        self.flows = None if made[0] is None else nn.ModuleList(made)  # created last: a stack without keeps its draws

    @property
    def noise_dim(self) -> int:
        return sum(self.sizes)

    def split(self, z: torch.Tensor) -> list[torch.Tensor]:
        """[z_1, ..., z_L] of z (..., sum(latents)), each (..., d_l)."""
        return list(z.split(self.sizes, dim=-1))

    def conditional(self, i: int, above: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma^2) of p(z_l | z_{l+1} = above) for layer l = i + 1 (i 0-based, < L-1): 2 x (..., d_l)."""
        return _gaussian(self.down[i](above))

    def posterior(self, encoded: torch.Tensor, flow: IAF | None = None) -> BottomUp | Ladder:
        """q(z|x) from the encoder's output [mu | log sigma^2 (| h)] of z_1 (B, 2 d_1 (+ C)), fp32; `flow`: z_1's
        IAF (the model's `flow`), given exactly when this stack has `flows`."""
        if self.flows is None:
            return POSTERIORS[self.inference](self, *encoded.chunk(2, dim=-1))
        return POSTERIORS[self.inference](self, *_with_context(encoded, self.context), [flow, *self.flows])

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z_L) + sum_l log p(z_l | z_{l+1}), z.shape[:-1] nats."""
        zs = self.split(z)
        lp = Normal(0.0, 1.0, validate_args=False).log_prob(zs[-1]).sum(-1)
        for i in range(len(zs) - 1):
            lp = lp + _log_normal(zs[i], *self.conditional(i, zs[i + 1]))
        return lp

    def sample_prior(self, n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        """n ancestral draws z_L ~ N(0, I), z_l ~ p(z_l | z_{l+1}), (n, sum(latents)), bottom first."""
        dtype = next(self.parameters()).dtype
        z = torch.randn(n, self.sizes[-1], generator=generator, device=device, dtype=dtype)
        zs = [z]
        for i in reversed(range(len(self.sizes) - 1)):
            mu, logvar = self.conditional(i, zs[0])
            eps = torch.randn(mu.shape, generator=generator, device=device, dtype=mu.dtype)
            zs.insert(0, mu + torch.exp(0.5 * logvar) * eps)
        return torch.cat(zs, -1)

    def descend(self, top: torch.Tensor) -> torch.Tensor:
        """z (..., sum(latents)) with z_L = top (..., d_L) and each lower layer at the mean of p(z_l | z_{l+1}):
        the code a plot of the top layer decodes."""
        zs = [top]
        for i in reversed(range(len(self.sizes) - 1)):
            zs.insert(0, self.conditional(i, zs[0])[0])
        return torch.cat(zs, -1)


class BottomUp:
    """q(z|x) = q(z_1|x) q(z_2|z_1) ... q(z_L|z_{L-1}) (Burda et al. 2016): each layer a diagonal Gaussian
    whose parameters are an MLP (`up`) of the draw below. Members as `aevb.latent.DiagonalGaussian`'s."""

    def __init__(
        self,
        h: Hierarchy,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        context: torch.Tensor | None = None,
        flows: Sequence[IAF] | None = None,
        up: Sequence[Callable] | None = None,
    ):
        self.h, self.mu1, self.logvar1, self.context1 = h, mu, logvar, context  # q(z_1|x): (B, d_1), h_1 (B, C)
        self.flows = flows  # one IAF per layer, bottom first, or None
        self.up = h.up if up is None else up  # q(z_{l+1} | z_l)'s nets: h.up, or their `frozen` forwards
        if flows is not None:  # no stl / dreg for flows (aevb.gradients): `require_detached` sees no method
            self.detached = None

    @property
    def noise_dim(self) -> int:
        return self.h.noise_dim

    def _walk(self, pick: Callable) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Up the stack: layer l's q (l = i + 1; its Gaussian from the layer below, its flow's context beside it)
        gives (z_l, log q(z_l | z_{l-1})) = pick(i, q); returns z (..., sum d), log q(z|x) (...,) nats and the
        conditional scales (of the Gaussians under any flows) side by side."""
        mu, logvar, context = self.mu1, self.logvar1, self.context1
        zs, scales, lq = [], [], 0.0
        for i in range(len(self.h.sizes)):
            if i > 0:
                out = self.up[i - 1](zs[-1])
                mu, logvar, context = _with_context(out, self.h.context) if self.flows else (*_gaussian(out), None)
            q = _layer_q(self.flows, i, mu, logvar, context)
            z, lq_i = pick(i, q)
            zs.append(z)
            scales.append(q.stddev.expand_as(z))
            lq = lq + lq_i
        return torch.cat(zs, -1), lq, torch.cat(scales, -1)

    def rsample_with_log_prob(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, log q(z|x)) from noise eps (..., B, sum d): (..., B, sum d) and (..., B) nats, differentiable;
        with flows, sum_l [log q_0(z_l,0) - log |det dz_l / dz_l,0|] along the draw, exact (aevb.flows)."""
        e = self.h.split(eps)
        z, lq, _ = self._walk(lambda i, q: q.rsample_with_log_prob(e[i]))
        return z, lq

    def rsample_from(self, eps: torch.Tensor) -> torch.Tensor:
        """z (..., B, sum d) from noise eps (..., B, sum d)."""
        return self.rsample_with_log_prob(eps)[0]

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) of any z (..., B, sum d), (..., B) nats (with flows: each layer's inverse, aevb.flows)."""
        zs = self.h.split(z)
        return self._walk(lambda i, q: (zs[i], q.log_prob(zs[i])))[1]

    def detached(self) -> BottomUp:
        """This q with phi (the encoder's q(z_1|x) and the `up` nets) cut from the graph: `log_prob(z)` has the
        same numbers, and a gradient along z alone, each layer's parents included (module docstring)."""
        return BottomUp(self.h, self.mu1.detach(), self.logvar1.detach(), up=[frozen(net) for net in self.h.up])

    @functools.cached_property
    def _means(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._walk(lambda i, q: (q.mean, 0.0))

    @property
    def mean(self) -> torch.Tensor:
        """The conditional means: mu_1(x), then mu_l at z_{l-1} = the mean below, (B, sum d)."""
        return self._means[0]

    @property
    def stddev(self) -> torch.Tensor:
        """The conditional standard deviations along `mean`'s pass, (B, sum d)."""
        return self._means[2]


class Ladder:
    """q(z|x) = q(z_L|x) prod_l q(z_l | z_{l+1}, x) with top-down precision weighting (Sonderby et al.
    2016, eqs. 17-19). Members as `aevb.latent.DiagonalGaussian`'s."""

    def __init__(
        self,
        h: Hierarchy,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        context: torch.Tensor | None = None,
        flows: Sequence[IAF] | None = None,
    ):
        self.h, self.down = h, h.down  # p(z_l | z_{l+1})'s nets, as q reads them: h.down, or `frozen` forwards
        self.hats = [(mu, logvar)]  # the deterministic bottom-up pass: N(mu^_l, sigma^_l^2) per layer, (B, d_l)
        self.flows, self.contexts = flows, [context]  # one IAF per layer and its context h_l (B, C) from that pass
        for up in h.up:
            out = up(torch.cat(self.hats[-1], -1))
            mu, logvar, context = _with_context(out, h.context) if flows else (*_gaussian(out), None)
            self.hats.append((mu, logvar))
            self.contexts.append(context)
        if flows is not None:  # no stl / dreg for flows (aevb.gradients): `require_detached` sees no method
            self.detached = None

    @property
    def noise_dim(self) -> int:
        return self.h.noise_dim

    def _layer(self, i: int, above: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma^2) of q(z_l | z_{l+1} = above, x): the bottom-up Gaussian times p(z_l | z_{l+1}),
        renormalised: precisions add, the mean is the precision-weighted mean."""
        mu_hat, lv_hat = self.hats[i]
        if above is None:  # the top layer: q(z_L|x) is the bottom-up Gaussian
            return mu_hat, lv_hat
        mu_p, lv_p = _gaussian(self.down[i](above))  # the generative p(z_l | z_{l+1}) (h.conditional)
        logvar = -torch.logaddexp(-lv_hat, -lv_p)  # 1/sigma^2 = 1/sigma^_l^2 + 1/sigma_p^2
        w = torch.sigmoid(lv_p - lv_hat)  # the bottom-up Gaussian's share of the precision
        return w * mu_hat + (1 - w) * mu_p, logvar

    def _walk(self, pick: Callable) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Down the stack from z_L: layer l's q given the layer above (the precision-weighted Gaussian, with the
        layer's IAF on top when the stack has flows) gives (z_l, log q(z_l | z_{l+1}, x)) = pick(i, q) (l = i + 1);
        returns z (..., sum d), log q(z|x) (...,) nats and the conditional scales, bottom first."""
        zs, scales, lq, above = [], [], 0.0, None
        for i in reversed(range(len(self.h.sizes))):
            q = _layer_q(self.flows, i, *self._layer(i, above), self.contexts[i])
            above, lq_i = pick(i, q)
            zs.insert(0, above)
            scales.insert(0, q.stddev.expand_as(above))
            lq = lq + lq_i
        return torch.cat(zs, -1), lq, torch.cat(scales, -1)

    def rsample_with_log_prob(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, log q(z|x)) from noise eps (..., B, sum d): (..., B, sum d) and (..., B) nats, differentiable;
        with flows, sum_l [log q_0(z_l,0) - log |det dz_l / dz_l,0|] along the draw, exact (aevb.flows)."""
        e = self.h.split(eps)
        z, lq, _ = self._walk(lambda i, q: q.rsample_with_log_prob(e[i]))
        return z, lq

    def rsample_from(self, eps: torch.Tensor) -> torch.Tensor:
        """z (..., B, sum d) from noise eps (..., B, sum d)."""
        return self.rsample_with_log_prob(eps)[0]

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) of any z (..., B, sum d), (..., B) nats (with flows: each layer's inverse, aevb.flows)."""
        zs = self.h.split(z)
        return self._walk(lambda i, q: (zs[i], q.log_prob(zs[i])))[1]

    def detached(self) -> Ladder:
        """This q with phi cut from the graph: the bottom-up Gaussians detached and the `down` nets run
        `frozen` inside q (not in log p(z)); `log_prob(z)` has the same numbers, and a gradient along z
        alone, each layer's parent z_{l+1} included (module docstring)."""
        q = copy.copy(self)
        q.__dict__.pop("_means", None)  # a cached pass of the graph-carrying q
        q.hats = [(mu.detach(), logvar.detach()) for mu, logvar in self.hats]
        q.down = [frozen(net) for net in self.h.down]
        return q

    @functools.cached_property
    def _means(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._walk(lambda i, q: (q.mean, 0.0))

    @property
    def mean(self) -> torch.Tensor:
        """The conditional means top down: mu^_L, then q's mean at z_{l+1} = the mean above, (B, sum d)."""
        return self._means[0]

    @property
    def stddev(self) -> torch.Tensor:
        """The conditional standard deviations along `mean`'s pass, (B, sum d)."""
        return self._means[2]


# --inference: the posterior of a stack, built from the Hierarchy and q(z_1|x)'s encoder output
POSTERIORS: dict[str, Callable[..., BottomUp | Ladder]] = {"bottom-up": BottomUp, "ladder": Ladder}
INFERENCE = tuple(POSTERIORS)
