"""Inverse autoregressive flow posteriors (Kingma et al. 2016): q(z|x) richer than a diagonal Gaussian,
with an exact log-density along its own draws.

z_0 ~ q_0(z|x) = N(mu(x), diag sigma^2(x)) (`aevb.latent.DiagonalGaussian`), then T steps

    [m_t, s_t] = MADE_t(z_{t-1}, h(x)),   sigma_t = sigmoid(s_t),   z_t = sigma_t * z_{t-1} + (1 - sigma_t) * m_t

(the gated, numerically stable update of the paper's eq. 14), where MADE_t (Germain et al. 2015) is an
autoregressive network: output i sees z_{t-1} only through the variables before i in step t's order,
and h(x) is a context the encoder emits beside mu and log sigma^2. The order is reversed from one step
to the next. Each step's Jacobian dz_t/dz_{t-1} is triangular with diagonal sigma_t, so

    log q(z_T|x) = log q_0(z_0|x) - sum_t sum_i log sigma_t,i        exactly.

`FlowPosterior` is a posterior of `aevb.latent`'s interface: `rsample_with_log_prob` gives z and this
log q along the draw (what the objectives and the importance-sampled log p(x) use); `log_prob(z)` of a
given z inverts the flow, D sequential passes per step (fine for tests and small batches).
`IAF.posterior(q0, h)` turns any diagonal Gaussian and its context into a flow posterior: one IAF per
latent layer gives each layer of a hierarchy its own flow (aevb.hierarchy: layer 1's is the model's `flow`,
layers 2..L's the stack's `flows`, each conditioned on a context from the net that gives the layer's Gaussian).

The MADE networks run like the encoder (in bf16 under autocast); their outputs are cast to fp32 and
the update and log-determinant are computed in fp32, like every density in aevb.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from .latent import DiagonalGaussian
from .nets import ACTIVATION_MODULES

if TYPE_CHECKING:  # config reads FLOWS: this module must not import config when it runs
    from .config import ModelConfig

# s_t is offset by this before the sigmoid, so that sigma_t starts near 1 (sigmoid(2) = 0.88) and
# each step starts close to the identity, whatever the initialisation (Kingma et al. 2016, Section 4:
# s_t "sufficiently positive, such as close to +1 or +2")
GATE_OFFSET = 2.0


def made_masks(order: torch.Tensor, hidden: tuple[int, ...], outputs_per_dim: int) -> list[torch.Tensor]:
    """The 0/1 masks (out, in) of MADE's layers for the variable order `order` (order[j] = the variable at
    position j): variable i gets degree d_i = its position + 1, hidden unit k of every layer degree k mod D
    (degree 0: it sees the context only), a hidden unit of degree d sees inputs of degree <= d and the
    output of variable i sees hidden units of degree < d_i. Output i thus depends on the variables
    before i alone. The last mask covers `outputs_per_dim` outputs per variable, [all of the 1st, ...]."""
    dim = order.numel()
    d_in = torch.empty(dim, dtype=torch.long)
    d_in[order] = torch.arange(1, dim + 1)
    degrees = [d_in] + [torch.arange(h) % dim for h in hidden]
    masks = [(d_out[:, None] >= d_prev[None, :]).float() for d_prev, d_out in zip(degrees[:-1], degrees[1:])]
    d_last = d_in.repeat(outputs_per_dim)
    masks.append((d_last[:, None] > degrees[-1][None, :]).float())
    return masks


class MADE(nn.Module):
    """(z (..., D), h (..., C)) -> (m, s), each (..., D): a masked MLP, autoregressive in the order
    `order`; the context h enters the first hidden layer unmasked (it may inform every output)."""

    def __init__(self, order: torch.Tensor, context: int, hidden: tuple[int, ...], activation: str = "tanh"):
        super().__init__()
        dim = order.numel()
        sizes = (dim, *hidden, 2 * dim)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for i, mask in enumerate(made_masks(order, hidden, 2)):
            self.register_buffer(f"mask{i}", mask, persistent=False)  # rebuilt from the config, not saved
        self.context = nn.Linear(context, hidden[0], bias=False)
        self.act = ACTIVATION_MODULES[activation]()

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        masks = [getattr(self, f"mask{i}") for i in range(len(self.layers))]
        a = F.linear(z, self.layers[0].weight * masks[0], self.layers[0].bias) + self.context(h)
        for layer, mask in zip(self.layers[1:], masks[1:]):
            a = F.linear(self.act(a), layer.weight * mask, layer.bias)
        return a.chunk(2, dim=-1)


class IAF(nn.Module):
    """T steps of inverse autoregressive flow on a D-dimensional z, conditioned on a context h (C,);
    step t is autoregressive in the order 0..D-1 for even t and D-1..0 for odd t."""

    def __init__(self, dim: int, context: int, hidden: tuple[int, ...], steps: int, activation: str = "tanh"):
        super().__init__()
        self.dim, self.context = dim, context
        forward_order = torch.arange(dim)
        self.steps = nn.ModuleList(
            MADE(forward_order if t % 2 == 0 else forward_order.flip(0), context, hidden, activation)
            for t in range(steps)
        )

    def _gates(self, made: MADE, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(m_t, s_t + GATE_OFFSET) of one step at z, in z's dtype (fp32 when the MADE ran in bf16)."""
        m, s = made(z, h)
        return m.to(z.dtype), s.to(z.dtype) + GATE_OFFSET

    def forward(self, z0: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_T, sum_t sum_i log sigma_t,i): z_T (..., D) and the log-determinant of dz_T/dz_0, (...,) nats.
        z0 (..., B, D) fp32; h (B, C) or (..., B, C)."""
        z, log_det = z0, z0.new_zeros(z0.shape[:-1])
        for made in self.steps:
            m, s = self._gates(made, z, h)
            sigma = torch.sigmoid(s)
            z = sigma * z + (1 - sigma) * m
            log_det = log_det + F.logsigmoid(s).sum(-1)  # log sigma without underflow
        return z, log_det

    def inverse(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_0, log-determinant of dz_T/dz_0) for a given z_T (..., D): each step solved for its input
        variable by variable, D passes (pass j fixes the j-th variable of the step's order)."""
        log_det = z.new_zeros(z.shape[:-1])
        for made in reversed(self.steps):
            prev = torch.zeros_like(z)
            for _ in range(self.dim):
                m, s = self._gates(made, prev, h)
                sigma = torch.sigmoid(s)
                prev = (z - (1 - sigma) * m) / sigma
            z = prev
            log_det = log_det + F.logsigmoid(s).sum(-1)
        return z, log_det

    def posterior(self, base: DiagonalGaussian, h: torch.Tensor) -> FlowPosterior:
        """q(z|x): this flow on top of the Gaussian q_0 = `base` (batch (B,), event (D,)) with context h (B, C).
        `base` may be any diagonal Gaussian with DiagonalGaussian's members (a stack's layer, aevb.hierarchy)."""
        return FlowPosterior(base, self, h)


class FlowPosterior:
    """q(z|x) = the law of z_T = IAF(z_0; h) for z_0 ~ q_0 (`aevb.latent`'s posterior interface).

    `mean` is the code for plots, encode and active units: the flow applied to q_0's mean (z_T at noise
    eps = 0), deterministic. It is not E_q[z], which has no closed form. `base` is q_0.
    """

    def __init__(self, base: DiagonalGaussian, flow: IAF, context: torch.Tensor):
        self.base, self.flow, self.context = base, flow, context

    @property
    def noise_dim(self) -> int:
        """Standard normal numbers per draw: those of q_0, D."""
        return self.base.noise_dim

    @property
    def stddev(self) -> torch.Tensor:
        """The standard deviations of the Gaussian q0 under the flow, (B, D): what `aevb encode` writes as
        the log-variances of a flow run (the flow's own spread has no closed form)."""
        return self.base.stddev

    @functools.cached_property
    def mean(self) -> torch.Tensor:
        """The flow of q_0's mean, (B, D): z at eps = 0. Computed (with autograd, unless under no_grad) when
        first read: the training step, which never reads it, pays no flow pass for it."""
        return self.flow(self.base.mean, self.context)[0]

    def rsample_from(self, eps: torch.Tensor) -> torch.Tensor:
        """z = IAF(mu + sigma * eps; h), (..., B, D), differentiable in every parameter. eps: (..., B, D)."""
        return self.flow(self.base.rsample_from(eps), self.context)[0]

    def rsample_with_log_prob(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, log q(z|x)) for z = `rsample_from(eps)`: (..., B, D) and (..., B) nats, exact:
        log q_0(z_0|x) - log |det dz/dz_0|, no inverse needed."""
        z0, log_q0 = self.base.rsample_with_log_prob(eps)
        z, log_det = self.flow(z0, self.context)
        return z, log_q0 - log_det

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) of any z (..., B, D), (..., B) nats, through the flow's inverse (D passes per step)."""
        z0, log_det = self.flow.inverse(z, self.context)
        return self.base.log_prob(z0) - log_det


def _iaf(c: ModelConfig, dim: int) -> IAF:
    return IAF(dim, c.flow_context, c.flow_hidden, c.flow_steps, c.activation)


# The posterior flows `--flow` names (`ModelConfig.flow` is checked against this dict): (config, size of the
# latent layer) -> the flow module (None: the diagonal Gaussian itself). The encoder then also emits the flow's
# context (and in a stack each layer's `up` net its own layer's, aevb.hierarchy).
FLOWS: dict[str, Callable[[ModelConfig, int], IAF | None]] = {"none": lambda c, dim: None, "iaf": _iaf}
