"""Figure 4: learned 2-D manifolds of Frey Face and MNIST (AEVB, Nz = 2). A grid of the unit square
mapped through the inverse Gaussian CDF is decoded to E[x|z] (aevb.plots.manifold_images)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .common import LRS, SETUPS, fit_curve, load_data, mean_elbo, out_dir, plots, progress_bar, write_csv

DATASETS = ("frey-face", "mnist")
DEFAULT_BUDGET = 1_000_000  # training samples per model
FULL_BUDGET = 100_000_000
SELECT = 20_000


def run(
    datasets: Sequence[str],
    budget: int,
    out: str,
    data_dir: str | None = None,
    grid: int = 20,
    points: int = 6,
    n_eval: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> list[Path]:
    """Train a 2-D AEVB model per dataset; write figure4-<dataset>.png (manifold) and .csv (its curve)."""
    from ..plots import manifold_images

    folder = out_dir(out)
    written = []
    select = min(SELECT, budget)
    with progress_bar(len(datasets) * (budget + (len(LRS) - 1) * select), "figure 4", progress) as bar:
        for dataset in datasets:
            setup = SETUPS[dataset]
            data = load_data(setup, data_dir, n_eval=n_eval)
            curve = fit_curve(
                "aevb", setup.model_config(data.shape, 2), data, budget, points, mean_elbo, "elbo", seed,
                LRS, select, bar.update,
            )  # fmt: skip
            rows = [{"dataset": dataset, "method": "aevb", "latent_dim": 2, "lr": curve.lr, **r} for r in curve.records]
            written.append(write_csv(folder / f"figure4-{dataset}.csv", rows))
            images = manifold_images(curve.model.eval(), grid)
            last = curve.records[-1]
            title = (
                f"Figure 4: {dataset}, AEVB, $N_z$ = 2, {last['examples']:.2g} training samples; "
                f"test ELBO {last['test_elbo']:.1f} nats"
            )
            written.append(_grid_png(images, grid, title, folder / f"figure4-{dataset}.png"))
    return written


def _grid_png(images, ncols: int, title: str, path: Path) -> Path:
    from ..plots import image_grid, save

    plots()
    return save(image_grid(images, ncols, title), path)
