"""A density of the latent space: a Gaussian mixture fitted to the training rows' posterior means E[z|x], and the
score "latent-gmm", the log density of a row's E[z|x] under it.

The VAE's prior N(0, I) describes the codes z ~ q(z|x), not where the posterior means of the training rows lie: on
images with several classes these fall into clusters, one or more a class. A mixture of full-covariance Gaussians
fitted to them is a global density of that aggregate, where `latent.latent_knn_score` and
`latent.latent_lof_score` are local: on one-class-out MNIST it ranks a held-out digit whose codes fall between
clusters as anomalous where its 5 nearest codes are still close (docs/benchmarks/anomaly_notes.md, "A mixture
density in the latent space").

The fitted mixture is one float64 tensor (K, 1 + D + D * D), a row per component: its log weight, its mean (D) and
an upper-triangular factor U of its precision matrix (D x D, row-major; precision = U U^T, scikit-learn's
`precisions_cholesky_`), so that it is saved as one safetensors entry and scored without scikit-learn.
"""

from __future__ import annotations

import math
import warnings

import torch

from ..model import VAE
from .latent import codes_of

COMPONENTS_DEFAULT = 20
"""The mixture's components: chosen on one seed of one-class-out MNIST and Fashion-MNIST (10 and 20 tried)."""
REGULARISATION = 1e-4
"""Added to each component's covariance diagonal (scikit-learn's `reg_covar`), in units of z squared."""
_CHUNK = 1 << 21  # (row, component, dimension, dimension) entries held at once: 16 MiB of float64


def fit_mixture(reference: torch.Tensor, components: int = COMPONENTS_DEFAULT, seed: int = 0) -> torch.Tensor:
    """A Gaussian mixture with full covariances fitted to the codes `reference` (N, D) by EM (scikit-learn's
    `GaussianMixture`, k-means initialisation with `seed`, at most 100 iterations), packed as (K, 1 + D + D * D)
    float64 (the module's layout); K = min(components, N)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    codes = reference.double().numpy()
    k = max(1, min(components, codes.shape[0]))
    gmm = GaussianMixture(k, covariance_type="full", reg_covar=REGULARISATION, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a mixture short of convergence is still a density
        gmm.fit(codes)
    return pack(
        torch.from_numpy(gmm.weights_), torch.from_numpy(gmm.means_), torch.from_numpy(gmm.precisions_cholesky_)
    )


def pack(weights: torch.Tensor, means: torch.Tensor, precision_cholesky: torch.Tensor) -> torch.Tensor:
    """(K, 1 + D + D * D) float64 from the weights (K,), means (K, D) and precision factors U (K, D, D)."""
    k, d = means.shape
    return torch.cat(
        [weights.double().log().reshape(k, 1), means.double(), precision_cholesky.double().reshape(k, d * d)], 1
    ).contiguous()


def unpack(mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log weights (K,), means (K, D), upper-triangular precision factors U (K, D, D)) of a packed mixture."""
    k, width = mixture.shape
    d = dimension(width)
    return mixture[:, 0], mixture[:, 1 : 1 + d], mixture[:, 1 + d :].reshape(k, d, d)


def dimension(width: int) -> int:
    """D of a packed mixture of `width` = 1 + D + D * D columns; ValueError if no D fits."""
    d = (math.isqrt(max(4 * width - 3, 0)) - 1) // 2
    if d < 1 or 1 + d + d * d != width:
        raise ValueError(f"{width} columns are not 1 + D + D * D for any D >= 1")
    return d


def log_density(mixture: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """log sum_k w_k N(z; mu_k, Sigma_k) of each code z (N, D), (N,) float64, in nats of z:
    log w_k + log |U_k| - D/2 log(2 pi) - |U_k^T (z - mu_k)|^2 / 2 with Sigma_k^-1 = U_k U_k^T, log-summed over k."""
    log_w, means, chol = unpack(mixture)
    k, d = means.shape
    constant = log_w + torch.diagonal(chol, dim1=1, dim2=2).log().sum(1) - 0.5 * d * math.log(2 * math.pi)
    step = max(1, _CHUNK // max(k * d * d, 1))
    out = []
    for start in range(0, codes.shape[0], step):
        centred = codes[start : start + step].double()[:, None, :] - means  # (n, K, D)
        # U_k^T (z - mu_k) as an elementwise product summed over D: each row's numbers do not depend on the others
        y = (centred.unsqueeze(-1) * chol).sum(2)  # (n, K, D)
        out.append(torch.logsumexp(constant - 0.5 * y.square().sum(2), dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def latent_gmm_score(
    model: VAE,
    x: torch.Tensor,
    samples: int = 0,
    seed: int = 0,
    batch_size: int = 500,
    *,
    reference: torch.Tensor,
    mixture: torch.Tensor,
    exclude_self: bool = False,
) -> torch.Tensor:
    """The log density of each row's posterior mean E[z|x] under the mixture fitted to the training rows'
    (`mixture` = `fit_mixture(reference)`), (N,) float64 in nats of z, higher = more normal. Deterministic:
    `samples`, `seed` and `batch_size` are there for the scores' common signature. exclude_self: x are the rows
    `reference` was encoded from (their codes are `reference`, not encoded again); the mixture was fitted to them,
    so their densities are in-sample."""
    codes = codes_of(model, x, reference, exclude_self)
    return log_density(mixture, codes)
