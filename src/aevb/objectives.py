"""Objectives as pure functions of (model, x): per-example terms in nats, shape (B,).

They see the model's latent structure only through `aevb.latent`'s interface: `model.noise_dim`,
`q = model.encode(x)` with `q.rsample_from(eps)` and `q.rsample_with_log_prob(eps)` (log q(z|x) of
its own draws), `model.log_prior(z)`,
`model.kl(q)` and `model.kl_along(q, eps)` (a stack's per-layer closed forms along the draws), so another
posterior or prior changes nothing here.

Training minimises the negative mean of what these return; evaluation averages them. Nothing here
reduces over the batch. `gradient` ("standard", "stl", "dreg"; aevb.gradients) picks the encoder's
gradient estimator of the IWAE bound and the Monte Carlo ELBO: the value returned is the same bound.

Under bf16 autocast (aevb.speed) the networks run in bf16 while every density, KL and noise draw
here is computed in fp32: `VAE.encode` and the likelihood heads cast the network outputs up.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import torch

from .gradients import GRADIENTS, doubly_reparameterise, draw
from .latent import DiagonalGaussian, gaussian_kl
from .model import VAE

__all__ = ["ELBOTerms", "decoder_log_prob", "elbo", "gaussian_kl", "iwae", "kl_per_dim", "log_weights"]

if TYPE_CHECKING:  # config reads OBJECTIVES: this module must not import config when it runs
    from .config import TrainConfig

# (sample, example) rows the decoder scores at once in log_weights: with k=5000 importance samples
# the (k, B, D) temporaries of the decoder and likelihood are tens of MB each, fresh allocations the
# kernel must page in every time; pieces of this many rows stay in cache (docs/benchmarks/speed.md)
LOG_WEIGHT_ROWS = 2048


class ELBOTerms(NamedTuple):
    """Per-example terms, each (B,) in nats: elbo = log_px_z - kl."""

    log_px_z: torch.Tensor  # E_q[log p(x|z)], the expected reconstruction log-likelihood
    kl: torch.Tensor  # KL(q(z|x) || p(z)): analytic (estimator B) or a Monte Carlo estimate (A); with B a stack's
    # is analytic in the layers with a closed form given the draws they condition on, Monte Carlo in the others
    elbo: torch.Tensor  # the variational lower bound on log p(x)


def _noise(model: VAE, q: DiagonalGaussian, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """(n, B, noise_dim) standard normal numbers for n draws of z per example."""
    mean = q.mean  # (B, Dz)
    shape = (n, mean.shape[0], model.noise_dim)
    return torch.randn(shape, generator=generator, device=mean.device, dtype=mean.dtype)


def decoder_log_prob(model: VAE, z: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x|z) (log p(x|z, y) for a conditional model), shape z.shape[:-1], nats:
    `model.decode(z, y).log_prob(x)`, through the head's `log_prob(h, x)` (fused where the head has a
    formula: no distribution object on the hot path); a standardised model's through `model.head`."""
    h = model.decoder_output(z, y)
    if not model.config.standardize:
        return model.likelihood.log_prob(h, x)
    return model.head(h.float() if h.dtype in (torch.float16, torch.bfloat16) else h).log_prob(x)


def _draws(
    model: VAE,
    q: DiagonalGaussian,
    eps: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor | None,
    log_q: bool,
    gradient: str = "standard",
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """z from the noise eps, (L, B, Dz); log q(z|x) of those draws (L, B) when `log_q` (else None);
    and E_q[log p(x|z)] averaged over the L draws, (B,) nats. One draw (L = 1, the default) is made
    and scored as a (B, Dz) batch (`_batch_of_draws`). `gradient`: how log q's gradient is taken (`draw`)."""
    one, e = _batch_of_draws(eps)
    z, lq = draw(q, e, gradient) if log_q else (q.rsample_from(e), None)
    log_px_z = _mean_over_draws(decoder_log_prob(model, z, x, y), one)
    if one:
        return z.unsqueeze(0), None if lq is None else lq.unsqueeze(0), log_px_z
    return z, lq, log_px_z


def _batch_of_draws(eps: torch.Tensor) -> tuple[bool, torch.Tensor]:
    """(one, e): whether eps (L, B, Dz) holds one draw per example, and the noise to draw from: one draw as a
    (B, Dz) batch (the same numbers as the mean over one row, with fewer ops, and none of the broadcasts'
    reductions in the backward pass), else eps itself."""
    one = eps.shape[0] == 1
    return one, eps[0] if one else eps


def _mean_over_draws(t: torch.Tensor, one: bool) -> torch.Tensor:
    """The mean over the draws of a per-draw term from `_batch_of_draws`' noise: (B,) for (L, B) or one (B,)."""
    return t if one else t.mean(0)


def _kl_draws(
    model: VAE,
    q: DiagonalGaussian,
    eps: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor | None,
    estimator: str,
    gradient: str = "standard",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(kl, log_px_z) over the draws from the noise eps (L, B, Dz), each (B,) nats: the KL term as `elbo`'s
    docstring says (closed form, a stack's closed forms along the draws, or Monte Carlo) and E_q[log p(x|z)]."""
    kl = model.kl(q) if estimator == "analytic" else None
    if kl is None and estimator == "analytic":
        one, e = _batch_of_draws(eps)
        along = model.kl_along(q, e)
        if along is not None:  # a stack: z and the per-draw KL, (L, B, Dz) and (L, B) (without L for one draw)
            z, kl = along
            return _mean_over_draws(kl, one), _mean_over_draws(decoder_log_prob(model, z, x, y), one)
    z, log_q, log_px_z = _draws(model, q, eps, x, y, kl is None, gradient)  # (L, B, Dz), (L, B) or None, (B,)
    if kl is None:  # estimator A, or no closed form anywhere (a mixture prior, a flow)
        kl = (log_q - model.log_prior(z)).mean(0)
    return kl, log_px_z


def elbo(
    model: VAE,
    x: torch.Tensor,
    samples: int = 1,
    estimator: str = "analytic",
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    gradient: str = "standard",
) -> ELBOTerms:
    """The SGVB estimate of the ELBO with L = `samples` draws per point, per example (B,) in nats.

    estimator="analytic": estimator B (eq. 7 of the paper), KL in closed form (`model.kl(q)`; a
    mixture prior or a flow has none and takes the Monte Carlo KL). A stack's KL is in closed form in each
    layer that has one given the draws it is conditioned on (`model.kl_along`: the bottom-up top layer, every
    ladder layer; not under a flow), Monte Carlo in the others: an unbiased estimate of the same KL.
    estimator="mc": estimator A (eq. 6), log p(z) - log q(z|x) averaged over the same L draws.
    `eps` (L, B, Dz), standard normal noise drawn by the caller, replaces the draw from `generator`.
    `y` (B,): the labels of a conditional model (then every density is conditioned on them).
    `gradient` "stl" (estimator "mc" only): log q without its score-function term (aevb.gradients).
    """
    if estimator not in ("analytic", "mc"):
        raise ValueError(f"unknown estimator {estimator!r}")
    if gradient not in ("standard", "stl") or (gradient == "stl" and estimator != "mc"):
        raise ValueError(f"the ELBO's gradient is standard, or stl with estimator mc; got {gradient!r}")
    x = x.reshape(x.shape[0], -1)
    q = model.encode(x, y)
    eps = _noise(model, q, samples, generator) if eps is None else eps
    kl, log_px_z = _kl_draws(model, q, eps, x, y, estimator, gradient)
    return ELBOTerms(log_px_z, kl, log_px_z - kl)


def layer_kl(
    model: VAE,
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    y: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """A stack's KL term of `elbo` (estimator "analytic", one draw) split by layer, (B, L) nats, bottom first:
    the same noise from `generator`, so the rows sum to that ELBO's kl. None for one latent layer (its KL is
    `elbo`'s kl). Each term is in closed form where the layer has one given the draws above or below it,
    Monte Carlo elsewhere (`q.rsample_with_kl`, aevb.hierarchy)."""
    if model.hierarchy is None:
        return None
    x = x.reshape(x.shape[0], -1)
    q = model.encode(x, y)
    return q.rsample_with_kl(_noise(model, q, 1, generator)[0])[1]


def log_weights(
    model: VAE,
    x: torch.Tensor,
    k: int = 1,
    generator: torch.Generator | None = None,
    q: DiagonalGaussian | None = None,
    eps: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
) -> torch.Tensor:
    """Importance log-weights log p(x, z_i) - log q(z_i|x) for z_i ~ q(z|x), shape (k, B), nats.

    The one estimator behind the IWAE bound, the importance-sampled log-likelihood and anomaly
    scores. `q` (the encoder output for x) and `eps` (k, B, Dz standard normal noise) may be given
    to reuse them; then k = eps.shape[0]. A conditional model's log-weights are those of
    log p(x | y) with q(z|x, y): `y` (B,) the labels.
    """
    return _weighted_draws(model, x, k, generator, q, eps, y)[0]


def _weighted_draws(
    model: VAE,
    x: torch.Tensor,
    k: int,
    generator: torch.Generator | None,
    q: DiagonalGaussian | None,
    eps: torch.Tensor | None,
    y: torch.Tensor | None,
    gradient: str = "standard",
) -> tuple[torch.Tensor, torch.Tensor]:
    """`log_weights` (k, B) and the draws z (k, B, Dz) they score; log q's gradient as `gradient` says."""
    x = x.reshape(x.shape[0], -1)
    q = model.encode(x, y) if q is None else q
    eps = _noise(model, q, k, generator) if eps is None else eps
    z, log_q = draw(q, eps, gradient)  # (k, B, Dz), (k, B)
    per = max(1, LOG_WEIGHT_ROWS // max(1, z.shape[1]))  # samples per piece: the same numbers as in one go
    log_px_z = torch.cat([decoder_log_prob(model, zi, x, y) for zi in z.split(per)])  # (k, B)
    return log_px_z + model.log_prior(z) - log_q, z


def iwae(
    model: VAE,
    x: torch.Tensor,
    k: int,
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    gradient: str = "standard",
) -> torch.Tensor:
    """The importance-weighted bound L_k = log (1/k) sum_i w_i (Burda et al., 2016), (B,) in nats.

    L_1 is the ELBO (estimator A with L = 1); L_k increases with k towards log p(x).
    `eps` (k, B, Dz), standard normal noise drawn by the caller, replaces the draw from `generator`.
    `gradient`: the encoder's gradient estimator, "standard", "stl" or "dreg" (aevb.gradients); the
    value is L_k in every case.
    """
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {', '.join(GRADIENTS)}; got {gradient!r}")
    log_w, z = _weighted_draws(model, x, k, generator, None, eps, y, gradient)  # (k, B), (k, B, Dz)
    if gradient == "dreg":
        doubly_reparameterise(z, log_w)
    return torch.logsumexp(log_w, dim=0) - math.log(k)


def kl_per_dim(q: DiagonalGaussian, z: torch.Tensor, estimator: str = "analytic") -> torch.Tensor:
    """KL(q(z_j|x) || N(0, 1)) of each latent dimension j, (B, Dz) nats, for the prior N(0, I):
    in closed form (estimator B), or log q(z_j|x) - log N(z_j; 0, 1) averaged over the draws z (L, B, Dz).
    The sum over j is `gaussian_kl(q)` (or estimator A's KL)."""
    return q.kl_per_dim(z, estimator)


def regularised_elbo(
    model: VAE,
    x: torch.Tensor,
    kl_weight: float | torch.Tensor = 1.0,
    free_bits: float = 0.0,
    samples: int = 1,
    estimator: str = "analytic",
    generator: torch.Generator | None = None,
    eps: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
) -> torch.Tensor:
    """E_q[log p(x|z)] - kl_weight * KL', (B,) nats: the training objective of beta-VAE (Higgins et al.
    2017; kl_weight = beta), of KL warm-up (kl_weight ramping from 0 to beta; Sonderby et al. 2016) and of
    free bits (Kingma et al. 2016), where KL' = sum_j max(free_bits, KL_j) so that dimensions using
    fewer than `free_bits` nats are not pushed to the prior; here per example and per latent dimension.

    With kl_weight = 1 and free_bits = 0 it equals `elbo(...).elbo`; not a bound otherwise. Free bits
    need the factorised prior N(0, I). `eps` and `y` as in `elbo`.
    """
    x = x.reshape(x.shape[0], -1)
    q = model.encode(x, y)
    eps = _noise(model, q, samples, generator) if eps is None else eps
    if free_bits > 0:
        if not model.analytic_kl:
            raise ValueError(
                "free bits need the prior N(0, I) and a diagonal Gaussian q, whose KL splits per latent dimension"
            )
        z, _, log_px_z = _draws(model, q, eps, x, y, False)  # (L, B, Dz), (B,)
        kl = kl_per_dim(q, z, estimator).clamp(min=free_bits).sum(-1)
    else:
        kl, log_px_z = _kl_draws(model, q, eps, x, y, estimator)
    return log_px_z - kl_weight * kl


# The training objectives `--objective` names (`TrainConfig.objective` is checked against this dict):
# objective(model, x, config, eps, y) -> (B,) nats, with eps (S, B, Dz) standard normal noise drawn by the
# trainer for the whole minibatch (so that data-parallel ranks can each keep their shard's part) and y
# the minibatch's labels for a conditional model (else None); config.gradient picks the encoder's gradient
Objective = Callable[[VAE, torch.Tensor, "TrainConfig", torch.Tensor, "torch.Tensor | None"], torch.Tensor]
OBJECTIVES: dict[str, Objective] = {
    "elbo": lambda m, x, c, eps, y=None: elbo(m, x, c.samples, c.estimator, eps=eps, y=y, gradient=c.gradient).elbo,
    "iwae": lambda m, x, c, eps, y=None: iwae(m, x, c.k, eps=eps, y=y, gradient=c.gradient),
}
