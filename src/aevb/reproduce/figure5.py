"""Figure 5: random samples from AEVB models of MNIST with Nz = 2, 5, 10, 20: E[x|z] for z ~ p(z)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .common import LRS, SETUPS, fit_curve, load_data, mean_elbo, out_dir, plots, progress_bar, write_csv

LATENTS = (2, 5, 10, 20)
DEFAULT_BUDGET = 1_000_000  # training samples per model
FULL_BUDGET = 100_000_000
SELECT = 20_000
SAMPLES = 100  # a 10 x 10 grid per model


def run(
    budget: int,
    out: str,
    data_dir: str | None = None,
    latents: Sequence[int] = LATENTS,
    points: int = 6,
    n_eval: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> list[Path]:
    """Train an AEVB MNIST model per Nz; write figure5.png (one panel of samples each) and figure5.csv."""
    from ..plots import save, tile

    setup = SETUPS["mnist"]
    folder = out_dir(out)
    data = load_data(setup, data_dir, n_eval=n_eval)
    select = min(SELECT, budget)
    rows, panels = [], []
    with progress_bar(len(latents) * (budget + (len(LRS) - 1) * select), "figure 5", progress) as bar:
        for nz in latents:
            curve = fit_curve(
                "aevb", setup.model_config(data.shape, nz), data, budget, points, mean_elbo, "elbo", seed,
                LRS, select, bar.update,
            )  # fmt: skip
            rows += [
                {"dataset": "mnist", "method": "aevb", "latent_dim": nz, "lr": curve.lr, **r} for r in curve.records
            ]
            x = curve.model.eval().sample(SAMPLES, torch.Generator().manual_seed(seed))
            panels.append((nz, curve.records[-1], tile(x.numpy(), int(np.sqrt(SAMPLES)))))
    csv_path = write_csv(folder / "figure5.csv", rows)
    plt = plots()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    for ax, (nz, last, mosaic) in zip(axes[0], panels):
        ax.imshow(mosaic, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"$N_z$ = {nz} (test ELBO {last['test_elbo']:.1f})", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"Figure 5: samples E[x|z], z ~ p(z), MNIST AEVB, {budget:.0e} training samples each", fontsize=9)
    fig.tight_layout()
    return [csv_path, save(fig, folder / "figure5.png")]
