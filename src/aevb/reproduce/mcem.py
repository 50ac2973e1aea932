"""Monte Carlo EM with an HMC E-step, the paper's third baseline (Kingma & Welling, 2013, Section 5).

The generative model is the VAE's decoder p(x|z) p(z). Every training point keeps one persistent
chain z_i. For a minibatch, the E-step runs one HMC transition (10 leapfrog steps, step size
adapted towards 90% acceptance) of each point's chain on the exact posterior p(z|x_i) ∝ p(x_i|z) p(z);
the M-step then makes `updates` (5) Adagrad steps on the decoder, raising the mean of
log p(x_i|z_i) over the acquired samples.

MCEM has no recognition model. To estimate log p(x) by importance sampling with the same estimator
as AEVB (`aevb.evaluate.log_likelihood`), the VAE's encoder is fitted alongside as a proposal: one
Adagrad step per minibatch on the ELBO in the encoder's parameters only. It never touches the
decoder, so the decoder is exactly what MCEM learns.
"""

from __future__ import annotations

import torch

from ..model import VAE
from ..objectives import elbo
from .hmc import HMC


def log_joint(model: VAE, x: torch.Tensor):
    """z -> log p(x|z) + log p(z), (B,) nats: the unnormalised posterior of each row of x."""
    return lambda z: model.log_joint(x, z)


class MCEM:
    """Monte Carlo EM over `n_train` points with persistent HMC chains; `step(x, index)` per minibatch."""

    def __init__(
        self,
        model: VAE,
        lr: float,
        n_train: int,
        weight_decay: float = 0.0,
        generator: torch.Generator | None = None,
        updates: int = 5,
        hmc: HMC | None = None,
        fit_encoder: bool = True,
    ):
        self.model = model
        self.generator = generator
        self.updates = updates
        self.hmc = hmc or HMC(n_leapfrog=10, step_size=0.05, target_accept=0.9)
        # one chain per training point, started from the prior
        with torch.no_grad():
            self.chains = model.sample_prior(n_train, generator)
        self.decoder_opt = torch.optim.Adagrad(model.decoder.parameters(), lr=lr, weight_decay=weight_decay)
        self.encoder_opt = (
            torch.optim.Adagrad(model.encoder.parameters(), lr=lr, weight_decay=weight_decay) if fit_encoder else None
        )

    def step(self, x: torch.Tensor, index: torch.Tensor) -> float:
        """E-step (one HMC transition of the rows' chains) and M-step (`updates` decoder steps).

        x: (B, ...) the minibatch, index: (B,) its rows in the training set. Returns the mean
        log p(x|z) + log p(z) at the new samples after the M-step (nats per example).
        """
        self.model.train()
        z, _ = self.hmc.step(log_joint(self.model, x), self.chains[index], self.generator)
        self.chains[index] = z
        for _ in range(self.updates):
            loss = -self.model.decode(z).log_prob(x.reshape(x.shape[0], -1)).mean()
            self.decoder_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.decoder_opt.step()
        if self.encoder_opt is not None:
            params = list(self.model.encoder.parameters())
            neg = -elbo(self.model, x, generator=self.generator).elbo.mean()
            for p, g in zip(params, torch.autograd.grad(neg, params)):
                p.grad = g
            self.encoder_opt.step()
        with torch.no_grad():
            return log_joint(self.model, x)(z).mean().item()
