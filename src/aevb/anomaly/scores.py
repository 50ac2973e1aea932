"""Anomaly scores of a fitted VAE, per example (N,) in nats; higher means more normal.

Every score is driven by the same per-example noise (`aevb.evaluate.example_noise`): example j's
draws depend only on (seed, j), so the numbers do not depend on the batch size and repeated calls
give identical results.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..evaluate import evaluating, example_noise, log_likelihood
from ..model import VAE, reparameterize
from ..objectives import gaussian_kl


def _posterior_terms(model: VAE, x: torch.Tensor, samples: int, seed: int, batch_size: int, with_kl: bool):
    """(B,) mean over `samples` draws z ~ q(z|x) of log p(x|z), minus KL(q || p) when with_kl."""
    dz = model.config.latent_dim
    out = []
    with evaluating(model):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            q = model.encode(xb)
            eps = torch.stack(
                [example_noise(seed, start + j, 0, (samples, dz)) for j in range(xb.shape[0])], dim=1
            )  # (L, B, Dz), the first chunk of the noise log_likelihood uses
            z = reparameterize(q, eps)
            value = model.decode(z).log_prob(xb.reshape(xb.shape[0], -1)).mean(0)  # (B,)
            out.append(value - gaussian_kl(q) if with_kl else value)
    return torch.cat(out)


def reconstruction_probability(model: VAE, x: torch.Tensor, samples: int, seed: int = 0, batch_size: int = 500):
    """An & Cho (2015): (1/L) sum_l log p(x | z_l), z_l ~ q(z|x); (N,) nats. No KL term."""
    return _posterior_terms(model, x, samples, seed, batch_size, with_kl=False)


def elbo_score(model: VAE, x: torch.Tensor, samples: int, seed: int = 0, batch_size: int = 500):
    """The ELBO with L = `samples` draws and the analytic KL (SGVB estimator B); (N,) nats."""
    return _posterior_terms(model, x, samples, seed, batch_size, with_kl=True)


def log_likelihood_score(model: VAE, x: torch.Tensor, samples: int, seed: int = 0, batch_size: int = 500):
    """Importance-sampled log p(x) with k = `samples` (the IWAE bound L_k); (N,) nats."""
    return log_likelihood(model, x, k=samples, batch_size=batch_size, seed=seed)


ScoreFn = Callable[..., torch.Tensor]
SCORES: dict[str, ScoreFn] = {
    "log-likelihood": log_likelihood_score,
    "elbo": elbo_score,
    "reconstruction": reconstruction_probability,
}
