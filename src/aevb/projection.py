"""A 2-D view of latent vectors for the report's scatter plot and the explorer's plane: the latent
itself when it has at most two dimensions, else the PCA plane of the points (numpy only)."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Projection:
    """A 2-D view of latent vectors: z ~= center + p @ components, p = (z - center) @ components.T."""

    center: np.ndarray  # (Dz,)
    components: np.ndarray  # (2, Dz), orthonormal rows
    axes: tuple[str, str]  # axis labels
    kind: str  # "latent" (z itself), "pca" or "latent-1d"

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return (z - self.center) @ self.components.T  # (N, 2)


def latent_projection(mu: np.ndarray) -> Projection:
    """The latent itself when it is 2-D (1-D: z1 and an unused axis), else PCA of the points `mu` (N, Dz)."""
    n, d = mu.shape
    if d <= 2:
        eye = np.eye(2, d)
        axes = ("z1 (posterior mean)", "z2 (posterior mean)" if d == 2 else "(unused: the latent is 1-D)")
        return Projection(np.zeros(d), eye, axes, "latent" if d == 2 else "latent-1d")
    center = mu.mean(axis=0)
    _, s, vt = np.linalg.svd(mu - center, full_matrices=False)
    share = s**2 / max(float((s**2).sum()), 1e-30)
    axes = tuple(f"PC{i + 1} of the posterior means ({100 * share[i]:.0f}% of variance)" for i in range(2))
    return Projection(center, vt[:2], axes, "pca")  # type: ignore[arg-type]
