"""Anomaly scores of a fitted VAE, per example (N,), in nats unless said otherwise; higher means more normal.

"complexity" adds a weight times the input's PNG code length (Serra et al. 2020); "likelihood-ratio" subtracts the
log p(x) of a background VAE fitted to noise-perturbed training rows (Ren et al. 2019); "latent-knn" is minus the
distance of E[z|x] to the nearest training rows' (`latent`, units of z); "latent-lof" is minus the log local outlier
factor of E[z|x] among them (`latent`, unitless); "latent-gmm" is the log density of E[z|x] under a Gaussian
mixture fitted to the training rows' (`mixture`, nats of z); "combined" adds log p(x), the full complexity
correction, "latent-knn", "latent-lof" and "latent-gmm", each standardised on the training rows (`combined`,
unitless).

Every row's draws are the same noise, of the seed alone (`aevb.evaluate.batch_noise` with shared noise: common
random numbers), so that a row's score is a function of that row: it does not depend on the other rows scored with
it, their order or the batch size, and repeated calls give identical results. The scores are the objectives' own
estimators (`aevb.objectives`), evaluated with that noise: nothing here re-derives a density.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..evaluate import batch_noise, evaluating, log_likelihood
from ..model import VAE
from ..objectives import ELBOTerms, elbo
from .combined import combined_score, needs
from .complexity import complexity_corrected
from .latent import latent_knn_score, latent_lof_score
from .mixture import latent_gmm_score


def _elbo_terms(model: VAE, x: torch.Tensor, samples: int, seed: int, batch_size: int) -> ELBOTerms:
    """The ELBO's terms with L = `samples` draws z ~ q(z|x) and the closed-form KL, each (N,) nats."""
    parts = []
    with evaluating(model):
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size]
            # (L, B, noise_dim): the first chunk of the noise that log_likelihood_score uses
            eps = batch_noise(seed, 0, range(xb.shape[0]), 0, (samples, model.noise_dim), shared=True)
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
    return log_likelihood(model, x, k=samples, batch_size=batch_size, seed=seed, shared_noise=True)


def complexity_score(
    model: VAE, x: torch.Tensor, samples: int, seed: int = 0, batch_size: int = 500, *, code_bits, weight: float = 1.0
):
    """log p(x) corrected for input complexity (Serra et al. 2020), tempered: log p(x) + mu L(x) ln 2, (N,) nats,
    higher = more normal.

    log p(x) is the importance-sampled estimate (k = `samples`); `code_bits` (N,) is L(x), the PNG code length
    in bits (`complexity.png_code_length`); `weight` is mu >= 0. mu = 1 is Serra's score, -S(x) ln 2 for
    S(x) = -log2 p(x) - L(x); mu = 0 is log p(x). `AnomalyDetector` uses mu = 0.1 by default
    (docs/benchmarks/anomaly_notes.md).
    """
    log_p = log_likelihood_score(model, x, samples, seed, batch_size).double()
    return complexity_corrected(log_p, torch.as_tensor(code_bits, dtype=torch.float64), weight)


def likelihood_ratio_score(
    model: VAE, x: torch.Tensor, samples: int, seed: int = 0, batch_size: int = 500, *, background: VAE
):
    """Ren et al. (2019): log p_model(x) - log p_background(x), both importance-sampled (k = `samples`,
    the same noise); (N,) nats, higher = more normal."""
    fg = log_likelihood_score(model, x, samples, seed, batch_size).double()
    return fg - log_likelihood_score(background, x, samples, seed, batch_size).double()


ScoreFn = Callable[..., torch.Tensor]
SCORES: dict[str, ScoreFn] = {
    "log-likelihood": log_likelihood_score,
    "elbo": elbo_score,
    "reconstruction": reconstruction_probability,
    "complexity": complexity_score,
    "likelihood-ratio": likelihood_ratio_score,
    "latent-knn": latent_knn_score,
    "latent-lof": latent_lof_score,
    "latent-gmm": latent_gmm_score,
    "combined": combined_score,
}
UNITS: dict[str, str] = {
    "latent-knn": "units of z",
    "latent-lof": "unitless",
    "latent-gmm": "nats of z",
    "combined": "unitless",
}
"""The unit of each score that is not in nats."""
COMPLEXITY_WEIGHT_DEFAULT = 0.1
"""AnomalyDetector's mu for "complexity": chosen on one seed of one-class-out MNIST and Fashion-MNIST, confirmed
on two others (docs/benchmarks/anomaly_notes.md, "A tempered complexity correction")."""
NEEDS: dict[str, tuple[str, ...]] = {
    "complexity": ("code_bits", "weight"),
    "likelihood-ratio": ("background",),
    "latent-knn": ("reference",),
    "latent-lof": ("reference", "density"),
    "latent-gmm": ("reference", "mixture"),
    "combined": needs(),
}
"""The extra keyword arguments a score takes: the detector supplies them. "background", "reference", "density",
"mixture" and "standardised" are fitted with the score (the background VAE, the training rows' posterior means,
their k-distances and local reachability densities, the Gaussian mixture fitted to them, the parts' training
medians and interquartile ranges): a detector has them only when fitted with a score that needs them. A "combined"
standardisation of fewer parts (saved by an older aevb) takes only `combined.needs` of them."""
FITTED: dict[str, str] = {
    "background": "background_",
    "reference": "latent_reference_",
    "density": "latent_density_",
    "mixture": "latent_mixture_",
    "standardised": "combined_standardisation_",
}
"""The detector's fitted attribute that holds each extra fitted with a score."""


def fitted_needs(name: str, standardised: torch.Tensor | None = None) -> tuple[str, ...]:
    """What score `name` takes from a detector whose combined standardisation is `standardised` (2, P) or None:
    NEEDS[name], but `combined.needs(P)` for "combined" with a standardisation of P parts (fewer where an older aevb
    saved it)."""
    if name == "combined" and standardised is not None:
        return needs(standardised.shape[1])
    return NEEDS.get(name, ())
