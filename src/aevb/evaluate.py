"""No-grad evaluation loops: mean ELBO, chunked importance-sampled log p(x), bits/dim, active units.

Every loop returns per-example values (N,) in nats; `summarize` reduces them to a mean and its
standard error, and `evaluation_record` gathers all of them into the one summary that `aevb eval`
stores and the report shows. The model's train/eval mode is restored on exit.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

from .model import VAE
from .objectives import ELBOTerms, elbo, layer_kl, log_weights

NOISE_CHUNK = 500  # importance samples drawn per (example, chunk); fixed so results ignore batching
# A latent unit is active when Var_x(E_q[z_j]) exceeds this (Burda et al. 2016, Section 5.2)
ACTIVE_THRESHOLD = 0.01


@contextlib.contextmanager
def evaluating(model: VAE) -> Iterator[VAE]:
    """model.eval() and no grad inside; the previous mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def _batches(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def elbo_terms(
    model: VAE,
    x: torch.Tensor,
    batch_size: int = 1000,
    samples: int = 1,
    seed: int = 0,
    estimator: str = "analytic",
    y: torch.Tensor | None = None,
) -> ELBOTerms:
    """The ELBO and its two terms for every row of x, each (N,) in nats (L = `samples`); a
    conditional model's (of log p(x|y)) with the labels y (N,). `estimator` as `aevb.objectives.elbo`'s: with
    "analytic" the KL is in closed form, a stack's in each layer that has one (aevb.hierarchy), Monte Carlo
    elsewhere; log_px_z is the same for either estimator (the same draws)."""
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    parts = []
    with evaluating(model):
        for s in _batches(x.shape[0], batch_size):
            parts.append(elbo(model, x[s].to(device), samples, estimator, g, y=_rows(y, s, device)))
    return ELBOTerms(*(torch.cat([getattr(p, f) for p in parts]).cpu() for f in ELBOTerms._fields))


def kl_per_layer(
    model: VAE, x: torch.Tensor, batch_size: int = 1000, seed: int = 0, y: torch.Tensor | None = None
) -> torch.Tensor | None:
    """A stack's KL term of `elbo_terms` (one sample, estimator "analytic") split by layer, (N, L) nats, bottom
    first, along the same draws (same seed and batches): the rows sum to its kl. None for one latent layer."""
    if model.hierarchy is None:
        return None
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    with evaluating(model):
        parts = [layer_kl(model, x[s].to(device), g, _rows(y, s, device)) for s in _batches(x.shape[0], batch_size)]
    return torch.cat(parts).cpu()


def _rows(y: torch.Tensor | None, s: slice, device: torch.device) -> torch.Tensor | None:
    return None if y is None else y[s].to(device)


def example_noise(seed: int, index: int, chunk: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal noise owned by one (example, chunk): the same whatever the batch or shard."""
    g = torch.Generator().manual_seed(((seed * 1_000_003 + index) * 65_537 + chunk) % 2**63)
    return torch.randn(shape, generator=g)


def batch_noise(
    seed: int, first_index: int, rows: range, chunk: int, shape: tuple[int, int], shared: bool
) -> torch.Tensor:
    """(n, B, Dz) for shape (n, Dz) and the B `rows`: each row's own `example_noise`, or with `shared` the noise
    of example first_index for every row."""
    if shared:
        return example_noise(seed, first_index, chunk, shape).unsqueeze(1).expand(shape[0], len(rows), shape[1])
    return torch.stack([example_noise(seed, first_index + j, chunk, shape) for j in rows], dim=1)


def log_likelihood(
    model: VAE,
    x: torch.Tensor,
    k: int = 5000,
    batch_size: int = 50,
    seed: int = 0,
    first_index: int = 0,
    on_batch: Callable[[int], None] | None = None,
    chunks: tuple[int, int] = (0, 1),
    y: torch.Tensor | None = None,
    shared_noise: bool = False,
) -> torch.Tensor:
    """Importance-sampled estimate of log p(x) for every row of x, (N,) in nats.

    log p(x) ~= logsumexp_i(log w_i) - log k with k samples from q(z|x): the IWAE bound L_k, which
    is a lower bound in expectation and converges to log p(x) as k grows. Samples are processed in
    chunks of NOISE_CHUNK and combined with a running logsumexp, so memory does not grow with k.
    Example j's noise depends only on (seed, first_index + j), so sharding or re-batching gives
    the same numbers. `chunks=(r, n)` keeps only the noise chunks c with c % n == r: the results of
    r = 0..n-1 combine into the full estimate by a logsumexp over r (how ranks share the samples).
    A conditional model's estimate is of log p(x|y), with the labels y (N,).
    shared_noise: every row draws example first_index's noise (common random numbers), so that each row's
    estimate is a function of that row alone, whatever the other rows, their order or the batching: what a
    score of single rows needs (`aevb.anomaly`). The rows' estimation errors are then correlated, so a mean
    over rows should not be given `summarize`'s standard error; evaluation keeps independent noise.
    """
    device = next(model.parameters()).device
    dz = model.noise_dim
    out = []
    with evaluating(model):
        for s in _batches(x.shape[0], batch_size):
            xb, yb = x[s].to(device), _rows(y, s, device)
            q = model.encode(xb, yb)
            acc = torch.full((xb.shape[0],), -math.inf, device=device)
            for c, start in enumerate(range(0, k, NOISE_CHUNK)):
                if c % chunks[1] != chunks[0]:
                    continue  # another process's share of the samples
                n = min(NOISE_CHUNK, k - start)
                eps = batch_noise(seed, first_index, range(s.start, s.stop), c, (n, dz), shared_noise).to(device)
                lw = log_weights(model, xb, q=q, eps=eps, y=yb)  # (n, B)
                acc = torch.logaddexp(acc, torch.logsumexp(lw, dim=0))
            out.append((acc - math.log(k)).cpu())
            if on_batch is not None:
                on_batch(xb.shape[0])
    return torch.cat(out)


def bits_per_dim(log_px: torch.Tensor, data_dim: int) -> torch.Tensor:
    """-log2 p(x) / D: the negative log-likelihood in bits per data dimension."""
    return -log_px / (data_dim * math.log(2.0))


def summarize(values: torch.Tensor) -> tuple[float, float]:
    """(mean, standard error of the mean) of per-example values."""
    v = values.double()
    se = v.std(unbiased=True).item() / math.sqrt(v.numel()) if v.numel() > 1 else float("nan")
    return v.mean().item(), se


def posterior_mean_variance(
    model: VAE, x: torch.Tensor, batch_size: int = 1000, y: torch.Tensor | None = None
) -> torch.Tensor:
    """Var_x(E_q(z|x)[z]) of each latent dimension over the rows of x, (noise_dim,): the activity
    statistic of Burda et al. (2016, Section 5.2); q(z|x, y) with the labels y for a conditional model."""
    device = next(model.parameters()).device
    with evaluating(model):
        mu = torch.cat(
            [
                model.encode(x[s].to(device), _rows(y, s, device)).mean.double().cpu()
                for s in _batches(x.shape[0], batch_size)
            ]
        )
    return mu.var(dim=0, unbiased=True) if mu.shape[0] > 1 else torch.zeros(mu.shape[1], dtype=torch.float64)


def active_units(
    model: VAE, x: torch.Tensor, threshold: float = ACTIVE_THRESHOLD, y: torch.Tensor | None = None
) -> int:
    """The number of active latent units: dimensions with Var_x(E_q[z_j]) > threshold (Burda et al. 2016)."""
    return int((posterior_mean_variance(model, x, y=y) > threshold).sum())


# log_likelihood's signature: (model, x, k=, batch_size=, seed=, on_batch=, y=) -> (N,) nats
LogLikelihood = Callable[..., torch.Tensor]


def evaluation_record(
    model: VAE,
    x: torch.Tensor,
    k: int,
    seed: int = 0,
    batch_size: int = 50,
    y: torch.Tensor | None = None,
    on_batch: Callable[[int], None] | None = None,
    estimate: LogLikelihood = log_likelihood,
) -> dict[str, Any]:
    """The evaluation summary of the rows x (N, ...), JSON-ready: examples, k, seed; the mean and standard
    error (`_se`) of the ELBO, its terms log_px_z and kl (estimator B, `elbo_terms`), and the importance-sampled
    log_likelihood (k samples, `batch_size` examples at a time, the exact log q and log p of each draw), all nats
    per example; bits_per_dim of the mean log p(x);
    active_units of latent_dim (all layers' units of a stack; per layer in active_units_per_layer, sizes in
    latents; a stack's mean kl per layer, bottom first, in kl_per_layer) and each unit's
    posterior_mean_variance (layers side by side, bottom first). A conditional model's, of log p(x|y), with
    the labels y (N,). `estimate` replaces `log_likelihood` (e.g. the data-parallel one
    of `aevb.distributed`, which every rank calls); `on_batch(examples)` follows its progress."""
    terms = elbo_terms(model, x, seed=seed, y=y)  # one sample per example: cheap, computed whole
    ll = estimate(model, x, k=k, batch_size=batch_size, seed=seed, on_batch=on_batch, y=y)
    res: dict[str, Any] = {"examples": x.shape[0], "k": k, "seed": seed}
    for name, v in (("elbo", terms.elbo), ("log_px_z", terms.log_px_z), ("kl", terms.kl), ("log_likelihood", ll)):
        res[name], res[name + "_se"] = summarize(v)
    res["bits_per_dim"] = summarize(bits_per_dim(ll, model.config.data_dim))[0]
    activity = posterior_mean_variance(model, x, y=y)  # (noise_dim,): every layer's units, bottom first
    res["active_units"], res["latent_dim"] = int((activity > ACTIVE_THRESHOLD).sum()), model.noise_dim
    layers = model.config.layers
    res["latents"] = list(layers)  # the layers' sizes, bottom first: [latent_dim] for one layer
    res["active_units_per_layer"] = [int((a > ACTIVE_THRESHOLD).sum()) for a in activity.split(layers)]
    per_layer = kl_per_layer(model, x, seed=seed, y=y)  # a stack's kl, layer by layer (the same draws)
    if per_layer is not None:
        res["kl_per_layer"] = per_layer.mean(0).tolist()
    res["posterior_mean_variance"] = [round(v, 6) for v in activity.tolist()]
    return res
