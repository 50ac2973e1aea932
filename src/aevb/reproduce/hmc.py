"""Hybrid (Hamiltonian) Monte Carlo for a batch of independent chains (Duane et al., 1987; Neal, 2011).

The sampler is the E-step of Monte Carlo EM (`aevb.reproduce.mcem`): each row of z is one chain targeting its
own density exp(log_prob(z)[b]). The leapfrog step size is adapted between transitions so that the
mean acceptance probability approaches `target_accept` (90% in Kingma & Welling, 2013, Section 5).
Each chain's step size is jittered uniformly by ±`jitter` on every transition (Neal, 2011, Section
4.2): with a fixed trajectory length, a trajectory close to a period of the target's narrow direction
would return near its start and the chain would not mix. Adapting while sampling breaks exact
detailed balance; call with adapt=False once tuned to sample the target exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

LogProb = Callable[[torch.Tensor], torch.Tensor]  # (B, D) -> (B,) unnormalised log-density


def log_prob_and_grad(log_prob: LogProb, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log_prob(z), d log_prob / dz): shapes (B,) and (B, D), both detached."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        lp = log_prob(z)
        (grad,) = torch.autograd.grad(lp.sum(), z)
    return lp.detach(), grad.detach()


class HMC:
    """HMC with `n_leapfrog` leapfrog steps, unit mass and one step size adapted towards `target_accept`.

    `step_size` is the current (adapted) step size; `accept_rate` the mean acceptance probability of
    the last transition.
    """

    def __init__(
        self,
        n_leapfrog: int = 10,
        step_size: float = 0.1,
        target_accept: float = 0.9,
        adapt_rate: float = 0.1,
        jitter: float = 0.2,
    ):
        if n_leapfrog < 1 or step_size <= 0 or not 0 < target_accept < 1 or adapt_rate < 0 or not 0 <= jitter < 1:
            raise ValueError(
                "HMC needs n_leapfrog >= 1, step_size > 0, 0 < target_accept < 1, adapt_rate >= 0, 0 <= jitter < 1"
            )
        self.n_leapfrog = n_leapfrog
        self.step_size = step_size
        self.target_accept = target_accept
        self.adapt_rate = adapt_rate
        self.jitter = jitter
        self.accept_rate = float("nan")

    def step(
        self, log_prob: LogProb, z: torch.Tensor, generator: torch.Generator | None = None, adapt: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One Metropolis-corrected HMC transition of every chain: (new z (B, D), acceptance probability (B,))."""
        u = torch.rand((z.shape[0], 1), generator=generator, device=z.device, dtype=z.dtype)
        eps = self.step_size * (1.0 + self.jitter * (2.0 * u - 1.0))  # (B, 1), one step size per chain
        lp0, g = log_prob_and_grad(log_prob, z)
        p0 = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        zn, p = z.detach().clone(), p0 + 0.5 * eps * g  # half step in momentum
        for i in range(self.n_leapfrog):
            zn = zn + eps * p
            lp, g = log_prob_and_grad(log_prob, zn)
            p = p + (eps if i < self.n_leapfrog - 1 else 0.5 * eps) * g
        # log of the Metropolis ratio exp(-H(z', p')) / exp(-H(z, p)), H = -log_prob + |p|^2 / 2
        log_ratio = (lp - 0.5 * p.square().sum(-1)) - (lp0 - 0.5 * p0.square().sum(-1))
        log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf)  # a diverged trajectory is rejected
        accept_prob = log_ratio.clamp(max=0.0).exp()
        u = torch.rand(accept_prob.shape, generator=generator, device=z.device, dtype=z.dtype)
        accepted = u < accept_prob
        z_new = torch.where(accepted.unsqueeze(-1), zn, z.detach())
        self.accept_rate = accept_prob.mean().item()
        if adapt:
            # multiplicative Robbins-Monro rule: grow the step when accepting more often than targeted
            self.step_size *= math.exp(self.adapt_rate * (self.accept_rate - self.target_accept))
        return z_new, accept_prob

    def sample(
        self,
        log_prob: LogProb,
        z: torch.Tensor,
        steps: int,
        generator: torch.Generator | None = None,
        adapt: bool = True,
    ) -> torch.Tensor:
        """Run `steps` transitions from z; returns the chains' states after each, (steps, B, D)."""
        out = []
        for _ in range(steps):
            z, _ = self.step(log_prob, z, generator, adapt)
            out.append(z)
        return torch.stack(out)
