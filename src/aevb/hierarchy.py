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

With `--flow iaf`, each layer's Gaussian carries an IAF (Kingma et al. 2016; `aevb.flows`) conditioned on a
context from the net that gives that Gaussian: z_1's flow is the model's `flow` (context from the encoder),
layers 2..L's are this module's `flows` (contexts from the `up` nets: bottom-up, of the draw below; ladder,
of the bottom-up pass, the flow then on the precision-weighted Gaussian). log q(z|x) stays exact along a
draw. The posteriors themselves are in `aevb.hierarchy_posteriors`.

z is all layers side by side, bottom first, (..., sum(latents)); the noise eps has the same layout. The
KL of a stack has no closed form as a whole (`kl` is None), but a layer's term can, given the draws of the
layers it is conditioned on. The ELBO's KL (estimator B, `VAE.kl_along`, `q.rsample_with_kl`) sums per layer:

- bottom-up: KL(q(z_L|z_{L-1}) || N(0, I)) in closed form given z_{L-1}; each lower layer's term stays
  log q(z_l|z_{l-1}) - log p(z_l|z_{l+1}) of the draw (q and p condition on different layers);
- ladder: every layer in closed form, KL(q(z_l|z_{l+1},x) || p(z_l|z_{l+1})) given the draw z_{l+1} (both
  diagonal Gaussians of the same z_{l+1}), KL(q(z_L|x) || N(0, I)) at the top;
- a layer under a flow: log q - log p along the draw (its q is not Gaussian).

An unbiased estimate of the same KL (the "kl" of the ELBO, training metrics and `aevb eval`; for the same
noise, log p(x|z) is the same number as estimator A's). Against estimator A's log q(z|x) - log p(z), its
gradient's variance was lower in every case measured: 0.28-0.83 of A's at initialisation
(tests/test_hierarchy_kl.py), 0.89 bottom-up and 0.04 ladder on 8-4 stacks trained 40 epochs on digits
(estimator A), 0.98 and 0.92 on the perturbed linear-Gaussian model of the tests. The value's variance is
lower far from the true posterior (0.19-0.85 at initialisation) and can be higher near it, where every draw
of estimator A is log p(x): 0.6-1.5 on such trained stacks, 1.1 and 1.6 on the perturbed model. Estimator
A (`--estimator mc`), the IWAE bound and the importance-sampled log p(x) use the exact log q and log p of
each draw.

`mean` is the pass of conditional means (each layer's Gaussian at the means of the layers it depends on):
E_q[z] exactly for linear nets, the code plotted otherwise.

`q.detached()` (the stl and dreg estimators of `aevb.gradients`) scores a given z with q's parameters phi
cut from the graph but not z's: each layer's Gaussian is recomputed from the (differentiable) layers it
is conditioned on, through the same nets run with detached parameters (`frozen`). log q(z|x) then keeps
its dependence on z, parents included (the path term), and loses the direct one on phi (the score term).
phi is every parameter q's density reads (a stack with flows has no `detached()`: stl and dreg refuse it):

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

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.distributions import Normal

from .flows import FLOWS, IAF
from .hierarchy_layers import log_normal, split_gaussian, split_with_context
from .hierarchy_posteriors import POSTERIORS, BottomUp, Ladder
from .nets import MLP

if TYPE_CHECKING:  # config reads INFERENCE: this module must not import config when it runs
    from .config import ModelConfig

__all__ = ["INFERENCE", "POSTERIORS", "BottomUp", "Hierarchy", "Ladder", "layer_hidden"]


def layer_hidden(config: ModelConfig, lower: int) -> tuple[int, ...]:
    """Hidden sizes of the MLP between a layer of size `lower` and the one above: `latent_hidden`, or
    (lower, lower) when it is empty (Burda et al.: z_1 = 100 -> 100 -> 100 -> z_2 = 50)."""
    return tuple(config.latent_hidden) or (lower, lower)


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
        return split_gaussian(self.down[i](above))

    def posterior(self, encoded: torch.Tensor, flow: IAF | None = None) -> BottomUp | Ladder:
        """q(z|x) from the encoder's output [mu | log sigma^2 (| h)] of z_1 (B, 2 d_1 (+ C)), fp32; `flow`: z_1's
        IAF (the model's `flow`), given exactly when this stack has `flows`."""
        if self.flows is None:
            return POSTERIORS[self.inference](self, *encoded.chunk(2, dim=-1))
        return POSTERIORS[self.inference](self, *split_with_context(encoded, self.context), [flow, *self.flows])

    def log_conditional(self, i: int, zs: Sequence[torch.Tensor] | Mapping[int, torch.Tensor]) -> torch.Tensor:
        """log p(z_l | z_{l+1}) of layer l = i + 1 (0-based i) at the layers zs[i], zs[i + 1], each (..., d); at the
        top (i = L-1) log N(z_L; 0, I). zs[i].shape[:-1] nats."""
        if i == len(self.sizes) - 1:
            return Normal(0.0, 1.0, validate_args=False).log_prob(zs[i]).sum(-1)
        return log_normal(zs[i], *self.conditional(i, zs[i + 1]))

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z_L) + sum_l log p(z_l | z_{l+1}), z.shape[:-1] nats."""
        zs = self.split(z)
        lp = self.log_conditional(len(zs) - 1, zs)
        for i in range(len(zs) - 1):
            lp = lp + self.log_conditional(i, zs)
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


INFERENCE = tuple(POSTERIORS)
