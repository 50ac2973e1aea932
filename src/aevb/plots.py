"""Matplotlib figures: image grids, the 2-D latent manifold, training curves, latent scatter.

Functions return a Figure (or an array); `save` writes one atomically. matplotlib is imported
here only, with the non-interactive Agg backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .files import atomic_write
from .model import VAE


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend, imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def is_image(data_shape: Sequence[int]) -> bool:
    """Whether examples of this shape are shown as pictures: grey (H, W), or (C, H, W) with C = 1 or 3 (RGB)."""
    return len(data_shape) == 2 or (len(data_shape) == 3 and data_shape[0] in (1, 3))


def tile(images: np.ndarray, ncols: int | None = None, pad: int = 1) -> np.ndarray:
    """(N, H, W) grey or (N, C, H, W) images (C = 1 or 3) in [0, 1] -> one mosaic of
    (rows*(H+pad)+pad, cols*(W+pad)+pad) grey levels, or of RGB pixels (..., 3) for colour images."""
    if images.ndim == 4:  # channels first -> last; one channel is grey
        images = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
    n, h, w = images.shape[:3]
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    out = np.ones((nrows * (h + pad) + pad, ncols * (w + pad) + pad, *images.shape[3:]), dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = img
    return out


def image_grid(images: np.ndarray | torch.Tensor, ncols: int | None = None, title: str | None = None):
    """A figure showing (N, H, W) grey or (N, 3, H, W) colour images in [0, 1] as a grid."""
    images = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)
    mosaic = tile(images, ncols)
    plt = pyplot()
    scale = 6.0 / max(mosaic.shape)
    fig, ax = plt.subplots(figsize=(max(2.0, mosaic.shape[1] * scale * 1.3), max(2.0, mosaic.shape[0] * scale * 1.3)))
    if mosaic.ndim == 3:  # RGB
        ax.imshow(mosaic, interpolation="nearest")
    else:
        ax.imshow(mosaic, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def manifold_images(model: VAE, n: int = 20, label: torch.Tensor | None = None) -> np.ndarray:
    """E[x|z] over an n x n grid of a 2-D latent, (n*n, H, W), as in the paper's Figure 4; a
    conditional model's for one class, `label` (1,); a stack's over its 2-D top layer z_L (the layers below
    at the means of p(z_l | z_{l+1}), `VAE.from_top`).

    Linearly spaced points (i + 0.5)/n of the unit square are mapped through the inverse
    Gaussian CDF, so the grid covers the prior's probability mass evenly.
    """
    if model.top_dim != 2:
        raise ValueError(f"the manifold needs a 2-D (top) latent space; this model has {model.top_dim}")
    u = (torch.arange(n, dtype=torch.float32) + 0.5) / n
    v = torch.distributions.Normal(0.0, 1.0).icdf(u)
    z1, z2 = torch.meshgrid(v, v.flip(0), indexing="xy")  # rows: z2 from high to low, like a plot
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=-1)
    device = next(model.parameters()).device
    with torch.no_grad():
        y = None if label is None else label.to(device).expand(z.shape[0])
        x = model.decode(model.from_top(z.to(device)), y).mean.cpu()
    return x.reshape(n * n, *model.config.data_shape).numpy()


def curves(records: Sequence[dict[str, Any]]):
    """Training and validation bounds (nats per example) against epochs."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [r["epoch"] for r in records]
    for key in sorted({k for r in records for k in r if k.startswith(("train_", "valid_elbo"))}):
        ax.plot(epochs, [r.get(key, float("nan")) for r in records], marker=".", label=key.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per example (higher is better)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def latent_scatter(mu: np.ndarray, labels: np.ndarray | None = None):
    """Posterior means in 2-D, coloured by label when there are labels."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    if labels is not None:
        fig.colorbar(ax.scatter(mu[:, 0], mu[:, 1], c=labels, cmap="tab10", s=4, alpha=0.7), ax=ax, label="label")
    else:  # one colour (a colormap without values makes matplotlib warn)
        ax.scatter(mu[:, 0], mu[:, 1], s=4, alpha=0.7)
    ax.set_xlabel("z1 (posterior mean)")
    ax.set_ylabel("z2 (posterior mean)")
    fig.tight_layout()
    return fig


def save(fig, path: str | Path) -> Path:
    """Write a figure as PNG atomically and close it."""
    plt = pyplot()
    try:
        return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))
    finally:
        plt.close(fig)
