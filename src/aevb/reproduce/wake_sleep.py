"""The wake-sleep algorithm (Hinton, Dayan, Frey & Neal, 1995) over the VAE's own networks.

The decoder p(x|z) p(z) is the generative model and the encoder q(z|x) is the recognition model, so
wake-sleep and AEVB differ only in the learning rule:

- wake phase: z ~ q(z|x) for the data, then raise log p(x|z) + log p(z) in the decoder's parameters
  (z is a fixed sample: no gradient reaches the encoder);
- sleep phase: dream (z, x) ~ p(z) p(x|z), then raise log q(z|x) in the encoder's parameters.

Both are per-example terms (B,) in nats; `wake_sleep_loss` combines one of each per minibatch
(`aevb.reproduce.common.Learner` takes the optimiser steps, as it does for AEVB).
"""

from __future__ import annotations

import torch

from ..model import VAE


def wake_terms(model: VAE, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """log p(x|z) + log p(z) with z ~ q(z|x) held fixed, (B,) nats; differentiable in the decoder only."""
    x = x.reshape(x.shape[0], -1)
    with torch.no_grad():
        q = model.encode(x)
        z = q.rsample_from(torch.randn(q.mean.shape, generator=generator, device=x.device))
    return model.log_joint(x, z)


def sleep_terms(model: VAE, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """log q(z|x) on n dreams (z, x) ~ p(z) p(x|z), (n,) nats; differentiable in the encoder only."""
    with torch.no_grad():
        z = model.sample_prior(n, generator)
        x = model.draw(z, generator=generator)
    return model.encode(x).log_prob(z)


def wake_sleep_loss(model: VAE, x: torch.Tensor, generator: torch.Generator | None = None):
    """(loss, report): one wake and one sleep phase on minibatch x. The loss to minimise is minus the
    two phases' mean objectives (their gradients touch disjoint parameters: decoder, encoder); the
    report is the mean wake objective, nats per example."""
    wake = wake_terms(model, x, generator)
    sleep = sleep_terms(model, x.shape[0], generator)
    return -(wake.mean() + sleep.mean()), wake.detach().mean()
