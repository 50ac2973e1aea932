"""Fitting the detector's VAE: the data-size rule that picks its architecture and schedule, the model
config it is built from, and the fit itself, Adam on the negative ELBO through the trainer's loop
(`aevb.loop`). `AnomalyDetector.fit` calls these once per fit (the first and each concentration step).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from tqdm import tqdm

from ..config import ModelConfig, TrainConfig
from ..errors import AevbError, DivergedError
from ..loop import Fitting, run_epoch
from ..model import VAE

# The data-size rule's gradient steps and most passes over the training rows, for tables and for images
# (see default_size).
STEPS = {"table": 2000, "image": 6000}
MAX_EPOCHS = {"table": 50, "image": 120}


def default_size(n: int, d: int, images: bool = False) -> dict[str, Any]:
    """The architecture and schedule used when `latent_dim`, `hidden`, `batch_size`, `epochs` are None.

    For n training rows of d features (`images`: the rows are images, the detector's `image_shape_` is set):
      hidden      two ReLU layers of h units, h = 2^ceil(log2(2d)) clipped to [32, 256]
      latent_dim  ceil(d / 4) clipped to [2, 16]
      batch_size  n // 50 clipped to [32, 256]
      epochs      tables: ceil(2000 * batch_size / n) clipped to [10, 50]: about 2000 gradient steps,
                  at least 10 passes over the data, and at most 50: below about 1,300 rows fewer
                  steps, since more passes over a small table over-fit it (ADBench's Ionosphere,
                  Pima and the held-out ODDS arrhythmia in docs/benchmarks/anomaly.md).
                  images: ceil(6000 * batch_size / n) clipped to [10, 120]: about 6000 steps, at most
                  the 120 passes over 2,000 images that one-class-out MNIST and Fashion-MNIST chose on one
                  seed and confirmed on nine (docs/benchmarks/anomaly_notes.md, "Three times the training
                  steps on images"); 35 passes over 45,012 images
    """
    kind = "image" if images else "table"
    h = int(min(256, max(32, 2 ** math.ceil(math.log2(max(2 * d, 1))))))
    batch = int(min(256, max(32, n // 50)))
    return {
        "hidden": (h, h),
        "latent_dim": int(min(16, max(2, math.ceil(d / 4)))),
        "batch_size": batch,
        "epochs": int(min(MAX_EPOCHS[kind], max(10, math.ceil(STEPS[kind] * batch / n)))),
    }


def chosen_size(n: int, d: int, given: dict[str, Any], images: bool = False) -> dict[str, Any]:
    """`default_size(n, d, images)` with each of its entries that `given` (the detector's parameters) sets, not
    None, in its place: the fitted `size_`."""
    size = default_size(n, d, images)
    for key in size:
        if given.get(key) is not None:
            size[key] = tuple(given[key]) if key == "hidden" else int(given[key])
    return size


def model_config(
    d: int, size: dict[str, Any], likelihood: str, columns: str | None, logvar_min: float, outlier_weight: float
) -> ModelConfig:
    """The config of the VAE fitted to d features: ReLU layers of `size`, the detector's likelihood."""
    return ModelConfig(
        data_shape=(d,),
        latent_dim=size["latent_dim"],
        hidden=tuple(int(h) for h in size["hidden"]),
        activation="relu",
        likelihood=likelihood,
        columns=columns or "",
        logvar_min=logvar_min,
        outlier_weight=float(outlier_weight),
    )


def fit_vae(
    x: torch.Tensor,
    config: ModelConfig,
    size: dict[str, Any],
    lr: float,
    seed: int,
    desc: str = "fit",
    verbose: bool = False,
) -> VAE:
    """A VAE of `config` fitted to x (n, d), in eval mode: Adam on the negative ELBO (SGVB estimator B,
    one draw per row), minibatches of a fresh permutation each epoch (`aevb.loop`); the initialisation and
    every draw are seeded with `seed`. AevbError when training diverges."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VAE(config)
    # plain Adam, not the trainer's fused update: the scores stay those the detector always gave
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    train_config = TrainConfig(
        objective="elbo",
        estimator="analytic",
        samples=1,
        batch_size=size["batch_size"],
        epochs=size["epochs"],
        binarize="none",
    )
    fitting = Fitting.of(model, optimizer, generator, train_config)
    bar = tqdm(range(1, size["epochs"] + 1), desc=desc, unit="epoch", disable=not verbose, leave=False)
    for epoch in bar:
        try:
            position = run_epoch(fitting, x, train_config, epoch=epoch)
        except DivergedError:
            raise AevbError(f"training diverged in epoch {epoch}; try a smaller lr") from None
        bar.set_postfix(elbo=f"{position.total.item() / x.shape[0]:.3f}")
    return model.eval()


def perturbed(x: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """x (n, d) with each value, independently with probability `fraction`, replaced by a uniform draw between
    its column's minimum and maximum (Ren et al. 2019's background data); a new tensor."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = x.min(0).values, x.max(0).values
    flip = torch.rand(x.shape, generator=g) < fraction
    noise = lo + (hi - lo) * torch.rand(x.shape, generator=g)
    return torch.where(flip, noise, x)
