"""The wake-sleep algorithm (Hinton, Dayan, Frey & Neal, 1995) over the VAE's own networks.

The decoder p(x|z) p(z) is the generative model and the encoder q(z|x) is the recognition model, so
wake-sleep and AEVB differ only in the learning rule:

- wake phase: z ~ q(z|x) for the data, then raise log p(x|z) + log p(z) in the decoder's parameters
  (z is a fixed sample: no gradient reaches the encoder);
- sleep phase: dream (z, x) ~ p(z) p(x|z), then raise log q(z|x) in the encoder's parameters.

Both are per-example terms (B,) in nats; `WakeSleep` does one step of both per minibatch.
"""

from __future__ import annotations

import torch

from .model import VAE, draw


def wake_terms(model: VAE, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """log p(x|z) + log p(z) with z ~ q(z|x) held fixed, (B,) nats; differentiable in the decoder only."""
    x = x.reshape(x.shape[0], -1)
    with torch.no_grad():
        q = model.encode(x)
        z = q.base_dist.loc + q.base_dist.scale * torch.randn(
            q.base_dist.loc.shape, generator=generator, device=x.device
        )
    return model.decode(z).log_prob(x) + model.prior().log_prob(z)


def sleep_terms(model: VAE, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """log q(z|x) on n dreams (z, x) ~ p(z) p(x|z), (n,) nats; differentiable in the encoder only."""
    device = next(model.parameters()).device
    with torch.no_grad():
        z = torch.randn(n, model.config.latent_dim, generator=generator, device=device)
        x = draw(model.decode(z), generator)
    return model.encode(x).log_prob(z)


class WakeSleep:
    """One wake and one sleep update per minibatch, with Adagrad on all parameters.

    The two phases touch disjoint parameters (wake: decoder, sleep: encoder), so a single Adagrad
    over both equals one optimiser per network. weight_decay is the gradient scale of an N(0, I)
    prior on the parameters per example (1/N for N training points).
    """

    def __init__(self, model: VAE, lr: float, weight_decay: float = 0.0, generator: torch.Generator | None = None):
        self.model = model
        self.generator = generator
        self.optimizer = torch.optim.Adagrad(model.parameters(), lr=lr, weight_decay=weight_decay)

    def step(self, x: torch.Tensor, index: torch.Tensor | None = None) -> float:
        """One wake and one sleep step on minibatch x; returns the mean wake objective (nats per example)."""
        self.model.train()
        wake = wake_terms(self.model, x, self.generator)
        sleep = sleep_terms(self.model, x.shape[0], self.generator)
        loss = -(wake.mean() + sleep.mean())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return wake.detach().mean().item()
