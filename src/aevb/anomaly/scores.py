"""Anomaly scores of a fitted VAE, per example (N,) in nats; higher means more normal.

Every score is driven by the same per-example noise (`aevb.evaluate.example_noise`): example j's
draws depend only on (seed, j), so the numbers do not depend on the batch size and repeated calls
give identical results. The scores are the objectives' own estimators (`aevb.objectives`), evaluated
with that noise: nothing here re-derives a density.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..evaluate import evaluating, example_noise, log_likelihood
from ..model import VAE
from ..objectives import ELBOTerms, elbo


def _elbo_terms(model: VAE, x: torch.Tensor, samples: int, seed: int, batch_size: int) -> ELBOTerms:
    """The ELBO's terms with L = `samples` draws z ~ q(z|x) and the closed-form KL, each (N,) nats."""
    parts = []
    with evaluating(model):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            eps = torch.stack(
                [example_noise(seed, start + j, 0, (samples, model.noise_dim)) for j in range(xb.shape[0])], dim=1
            )  # (L, B, noise_dim), the first chunk of the noise log_likelihood uses
            parts.append(elbo(model, xb, samples, "analytic", eps=eps))
    return ELBOTerms(*(torch.cat([getattr(p, f) for p in parts]) for f in ELBOTerms._fields))


def reconstruction_probability(model: VAE, x: torch.Tensor, samples: int, seed: int = 0, batch_size: int = 500):
    """An & Cho (2015): (1/L) sum_l log p(x | z_l), z_l ~ q(z|x); (N,) nats. No KL term."""
    return _elbo_terms(model, x, samples, seed, batch_size).log_px_z


def elbo_score(model: VAE, x: torch.Tensor, samples: int, seed: int = 0, batch_size: int = 500):
    """The ELBO with L = `samples` draws and the analytic KL (SGVB estimator B); (N,) nats."""
    return _elbo_terms(model, x, samples, seed, batch_size).elbo


def log_likelihood_score(model: VAE, x: torch.Tensor, samples: int, seed: int = 0, batch_size: int = 500):
    """Importance-sampled log p(x) with k = `samples` (the IWAE bound L_k); (N,) nats."""
    return log_likelihood(model, x, k=samples, batch_size=batch_size, seed=seed)


ScoreFn = Callable[..., torch.Tensor]
SCORES: dict[str, ScoreFn] = {
    "log-likelihood": log_likelihood_score,
    "elbo": elbo_score,
    "reconstruction": reconstruction_probability,
}
