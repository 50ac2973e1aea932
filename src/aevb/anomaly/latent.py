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
_DENSITY_EPS = 1e-10  # added to a mean reachability distance, as scikit-learn's LocalOutlierFactor does
_CHUNK_DISTANCES = 1 << 22  # distances held at once (32 MiB of float64): rows per chunk = this / reference rows


def reference_codes(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """The posterior means E[z|x] of the rows x (N, d), (N, Dz) float32: what `latent_knn_score` measures
    distances to."""
    with torch.no_grad():
        return posterior_means(model, x).float().contiguous()


def codes_of(model: VAE, x: torch.Tensor, reference: torch.Tensor, exclude_self: bool) -> torch.Tensor:
    """The posterior means of the rows x: `reference` itself where x are the rows it was encoded from
    (exclude_self), else `reference_codes(model, x)`."""
    return reference if exclude_self else reference_codes(model, x)


def nearest(
    reference: torch.Tensor, codes: torch.Tensor, neighbours: int = NEIGHBOURS_DEFAULT, exclude_self: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Euclidean distances (N, k) float64 of each row of `codes` (N, Dz) to its k = `neighbours` nearest rows
    of `reference` (M, Dz), ascending, and those rows' indices (N, k); computed in float64, in chunks of rows.

    exclude_self: `codes` are `reference` itself, and each row's nearest reference row (itself, at distance 0)
    is left out, as for the training rows' own scores. Fewer than `neighbours` reference rows: all are used.
    """
    ref = reference.double()
    skip = int(exclude_self)
    k = min(neighbours, ref.shape[0] - skip)
    if k < 1:
        raise ValueError(f"{ref.shape[0]} reference rows leave no neighbour to measure a distance to")
    step = max(1, _CHUNK_DISTANCES // max(ref.shape[0], 1))
    distances, indices = [], []
    for start in range(0, codes.shape[0], step):
        d = torch.cdist(codes[start : start + step].double(), ref, compute_mode="donot_use_mm_for_euclid_dist")
        values, index = d.topk(k + skip, dim=1, largest=False)  # (n, k + skip), ascending
        distances.append(values[:, skip:])
        indices.append(index[:, skip:])
    if not distances:
        return torch.zeros(0, k, dtype=torch.float64), torch.zeros(0, k, dtype=torch.int64)
    return torch.cat(distances), torch.cat(indices)


def knn_distance(
    reference: torch.Tensor, codes: torch.Tensor, neighbours: int = NEIGHBOURS_DEFAULT, exclude_self: bool = False
) -> torch.Tensor:
    """The mean Euclidean distance of each row of `codes` (N, Dz) to its `neighbours` nearest rows of
    `reference` (M, Dz), (N,) float64 (`nearest`, whose exclude_self it takes)."""
    return nearest(reference, codes, neighbours, exclude_self)[0].mean(1)


def _reachability_density(distances: torch.Tensor, indices: torch.Tensor, k_distance: torch.Tensor) -> torch.Tensor:
    """1 / (the mean reachability distance max(d(x, r), k-distance(r)) over x's neighbours r + 1e-10), (N,)."""
    return 1.0 / (torch.maximum(distances, k_distance[indices]).mean(1) + _DENSITY_EPS)


def local_density(reference: torch.Tensor, neighbours: int = NEIGHBOURS_DEFAULT) -> torch.Tensor:
    """(2, M) float64 for the reference rows (M, Dz): each row's distance to its `neighbours`-th nearest other row
    (row 0, its k-distance) and its local reachability density among the others (row 1), Breunig et al. (2000):
    what `lof_score` compares a row's density with."""
    return density_of(*nearest(reference, reference, neighbours, exclude_self=True))


def density_of(distances: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """`local_density` from the reference rows' search among themselves already made,
    `nearest(reference, reference, neighbours, exclude_self=True)`."""
    k_distance = distances[:, -1].contiguous()
    return torch.stack([k_distance, _reachability_density(distances, indices, k_distance)])


def lof_score(density: torch.Tensor, distances: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Minus the log local outlier factor of rows whose nearest reference rows are (`distances`, `indices`) from
    `nearest`, (N,) float64: log(the row's reachability density / the mean of its neighbours' densities), with
    `density` (2, M) = `local_density(reference)`. 0 where a row is as dense as its neighbours, negative where
    sparser; exp(-score) is scikit-learn's LocalOutlierFactor(novelty=True) outlier factor."""
    k_distance, neighbour_density = density[0], density[1]
    own = _reachability_density(distances, indices, k_distance)
    return torch.log(own) - torch.log(neighbour_density[indices].mean(1))


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
    codes = codes_of(model, x, reference, exclude_self)
    return -knn_distance(reference, codes, neighbours, exclude_self)


def latent_lof_score(
    model: VAE,
    x: torch.Tensor,
    samples: int = 0,
    seed: int = 0,
    batch_size: int = 500,
    *,
    reference: torch.Tensor,
    density: torch.Tensor,
    neighbours: int = NEIGHBOURS_DEFAULT,
    exclude_self: bool = False,
    searched: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Minus the log local outlier factor of each row's posterior mean among the training rows' (`reference`, with
    `density` = `local_density(reference)`), (N,) float64, unitless, higher = more normal: a code is anomalous
    as the region around it is sparser than its neighbours' regions are, which the plain distance misses where the
    normal classes are unequally spread. Deterministic, like `latent_knn_score`, whose arguments it takes.
    searched: the rows' `nearest(reference, codes, neighbours, exclude_self)`, where the caller has made it (the
    detector's fit, whose search of the training codes among themselves also gives `density`)."""
    if searched is None:
        codes = codes_of(model, x, reference, exclude_self)
        searched = nearest(reference, codes, neighbours, exclude_self)
    return lof_score(density, *searched)
