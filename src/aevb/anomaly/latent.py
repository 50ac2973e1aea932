"""A score from the latent space: a row is as normal as its posterior mean E[z|x] lies close to those of the
training rows (a k-nearest-neighbour distance, as PyOD's KNN takes it on the features, here on the codes).

On one-class-out images it fails where the likelihood does not and the other way round: MNIST's held-out digit 1
has a high log p(x) (few ink pixels) but codes away from the other digits' (docs/benchmarks/anomaly_notes.md).
"""

from __future__ import annotations

import torch

from ..model import VAE
from ..sampling import posterior_means

NEIGHBOURS_DEFAULT = 5
_CHUNK_DISTANCES = 1 << 22  # distances held at once (32 MiB of float64): rows per chunk = this / reference rows


def reference_codes(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """The posterior means E[z|x] of the rows x (N, d), (N, Dz) float32: what `latent_knn_score` measures
    distances to."""
    with torch.no_grad():
        return posterior_means(model, x).float().contiguous()


def knn_distance(
    reference: torch.Tensor, codes: torch.Tensor, neighbours: int = NEIGHBOURS_DEFAULT, exclude_self: bool = False
) -> torch.Tensor:
    """The mean Euclidean distance of each row of `codes` (N, Dz) to its `neighbours` nearest rows of
    `reference` (M, Dz), (N,) float64; computed in float64, in chunks of rows.

    exclude_self: `codes` are `reference` itself, and each row's nearest reference row (itself, at distance 0)
    is left out, as for the training rows' own scores. Fewer than `neighbours` reference rows: all are used.
    """
    ref = reference.double()
    skip = int(exclude_self)
    k = min(neighbours, ref.shape[0] - skip)
    if k < 1:
        raise ValueError(f"{ref.shape[0]} reference rows leave no neighbour to measure a distance to")
    step = max(1, _CHUNK_DISTANCES // max(ref.shape[0], 1))
    out = []
    for start in range(0, codes.shape[0], step):
        d = torch.cdist(codes[start : start + step].double(), ref, compute_mode="donot_use_mm_for_euclid_dist")
        nearest = d.topk(k + skip, dim=1, largest=False).values  # (n, k + skip), ascending
        out.append(nearest[:, skip:].mean(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def latent_knn_score(
    model: VAE,
    x: torch.Tensor,
    samples: int = 0,
    seed: int = 0,
    batch_size: int = 500,
    *,
    reference: torch.Tensor,
    neighbours: int = NEIGHBOURS_DEFAULT,
    exclude_self: bool = False,
) -> torch.Tensor:
    """Minus the mean distance of each row's posterior mean to its `neighbours` nearest rows of `reference`
    (the training rows' posterior means, `reference_codes`), (N,) float64 in units of z, higher = more normal.
    Deterministic: `samples`, `seed` and `batch_size` are there for the scores' common signature.
    exclude_self: x are the rows `reference` was encoded from, so their codes are `reference` itself (not encoded
    again)."""
    codes = reference if exclude_self else reference_codes(model, x)
    return -knn_distance(reference, codes, neighbours, exclude_self)
