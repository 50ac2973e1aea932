"""The posteriors q(z|x) of a stack of latent layers (`aevb.hierarchy`'s docstring says what they are and
how `detached()` cuts them): `BottomUp` and `Ladder`, each layer a diagonal Gaussian (`LayerGaussian`), or
with `--flow iaf` that layer's IAF on top of it (`aevb.flows`; layer 1's is the model's `flow`, layers
2..L's the `Hierarchy`'s `flows`). log q(z|x) is the sum of the layers' exact log-densities given their
parents, so with flows, along a draw: sum_l [log N(eps_l) - log |det dz_l/deps_l|] with z's parents fixed,
the log-determinant of the whole (block-triangular) dz/deps. `rsample_with_kl` gives each layer's term of
the KL along a draw: in closed form where the layer's q and p are Gaussians of the same parents (`kl_normal`;
which layers: `aevb.hierarchy`'s docstring), log q - log p of the draw otherwise.

Flow contexts: bottom-up, h_1 comes from the encoder beside [mu_1, log sigma_1^2] and h_l from layer l's
`up` net beside its Gaussian (a function of the draw z_{l-1}); ladder, each h_l comes from the deterministic
bottom-up pass beside N(mu^_l, sigma^_l^2), and the IAF goes on the precision-weighted Gaussian of
q(z_l | z_{l+1}, x). A stack with flows has no `detached()` (`detached` is None): stl and dreg refuse it in one
line, as for one layer (aevb.gradients).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from .flows import IAF, FlowPosterior
from .hierarchy_layers import LayerGaussian, frozen, kl_normal, layer_q, split_gaussian, split_with_context

if TYPE_CHECKING:  # hierarchy builds these posteriors: it imports this module, not the other way round
    from .hierarchy import Hierarchy


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
                mu, logvar, context = split_with_context(out, self.h.context)
            q = layer_q(self.flows, i, mu, logvar, context)
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

    def rsample_with_kl(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, kl) from noise eps (..., B, sum d): z as `rsample_from`'s, and each layer's term of KL(q(z|x) || p(z))
        along that draw, (..., B, L) nats, bottom first; the sum's mean over draws is the KL. Layer L's term is
        KL(q(z_L | z_{L-1}) || N(0, I)) in closed form given the draw z_{L-1}; a lower layer's is Monte Carlo,
        log q(z_l | z_{l-1}) - log p(z_l | z_{l+1}) (q and p condition on different layers), as is a flow's."""
        e, top, terms, closed = self.h.split(eps), len(self.h.sizes) - 1, [], []

        def pick(i: int, q: LayerGaussian | FlowPosterior) -> tuple[torch.Tensor, float]:
            closed.append(i == top and isinstance(q, LayerGaussian))
            if closed[-1]:  # its Gaussian is fixed by z_{L-1}, drawn already; z_L is drawn for log p(z_{L-1} | z_L)
                terms.append(kl_normal(q.mu, q.logvar))
                return q.rsample_from(e[i]), 0.0
            z, lq = q.rsample_with_log_prob(e[i])
            terms.append(lq)  # log p(z_l | z_{l+1}) is subtracted once z_{l+1} is drawn
            return z, 0.0

        z = self._walk(pick)[0]
        zs = self.h.split(z)
        kl = [t if c else t - self.h.log_conditional(i, zs) for i, (t, c) in enumerate(zip(terms, closed))]
        return z, torch.stack([t.expand(z.shape[:-1]) for t in kl], -1)

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
        """The conditional means: mu_1(x), then mu_l at z_{l-1} = the mean below, (B, sum d); with flows, each
        layer's flow of its Gaussian's mean (`FlowPosterior.mean`)."""
        return self._means[0]

    @property
    def stddev(self) -> torch.Tensor:
        """The conditional standard deviations along `mean`'s pass, (B, sum d) (of the Gaussians under any flows)."""
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
            mu, logvar, context = split_with_context(out, h.context)
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
        mu_p, lv_p = split_gaussian(self.down[i](above))  # the generative p(z_l | z_{l+1}) (h.conditional)
        logvar = -torch.logaddexp(-lv_hat, -lv_p)  # 1/sigma^2 = 1/sigma^_l^2 + 1/sigma_p^2
        w = torch.sigmoid(lv_p - lv_hat)  # the bottom-up Gaussian's share of the precision
        return w * mu_hat + (1 - w) * mu_p, logvar

    def _walk(self, pick: Callable) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Down the stack from z_L: layer l's q given the layer above (the precision-weighted Gaussian, with the
        layer's IAF on top when the stack has flows) gives (z_l, log q(z_l | z_{l+1}, x)) = pick(i, q) (l = i + 1);
        returns z (..., sum d), log q(z|x) (...,) nats and the conditional scales, bottom first."""
        zs, scales, lq, above = [], [], 0.0, None
        for i in reversed(range(len(self.h.sizes))):
            q = layer_q(self.flows, i, *self._layer(i, above), self.contexts[i])
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

    def rsample_with_kl(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, kl) from noise eps (..., B, sum d): z as `rsample_from`'s, and each layer's term of KL(q(z|x) || p(z))
        along that draw, (..., B, L) nats, bottom first; the sum's mean over draws is the KL. Each term is in closed
        form given the draw above: KL(q(z_l | z_{l+1}, x) || p(z_l | z_{l+1})), two diagonal Gaussians of the same
        z_{l+1}, and KL(q(z_L|x) || N(0, I)) at the top; under a flow, log q - log p along the draw (Monte Carlo)."""
        e, top, zs, terms = self.h.split(eps), len(self.h.sizes) - 1, {}, {}

        def pick(i: int, q: LayerGaussian | FlowPosterior) -> tuple[torch.Tensor, float]:
            if isinstance(q, LayerGaussian):  # p(z_l | z_{l+1}) of the generative `down` nets (not a frozen q's)
                zs[i] = q.rsample_from(e[i])
                terms[i] = kl_normal(q.mu, q.logvar, *(() if i == top else self.h.conditional(i, zs[i + 1])))
            else:
                zs[i], lq = q.rsample_with_log_prob(e[i])
                terms[i] = lq - self.h.log_conditional(i, zs)
            return zs[i], 0.0

        z = self._walk(pick)[0]
        return z, torch.stack([terms[i].expand(z.shape[:-1]) for i in range(top + 1)], -1)

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
        """The conditional means top down: mu^_L, then q's mean at z_{l+1} = the mean above, (B, sum d); with
        flows, each layer's flow of its Gaussian's mean (`FlowPosterior.mean`)."""
        return self._means[0]

    @property
    def stddev(self) -> torch.Tensor:
        """The conditional standard deviations along `mean`'s pass, (B, sum d) (of the Gaussians under any flows)."""
        return self._means[2]


# --inference: the posterior of a stack, built from the Hierarchy and q(z_1|x)'s encoder output
POSTERIORS: dict[str, Callable[..., BottomUp | Ladder]] = {"bottom-up": BottomUp, "ladder": Ladder}
