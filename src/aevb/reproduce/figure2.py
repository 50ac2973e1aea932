"""Figure 2: the variational lower bound (train and test) against training samples evaluated, AEVB
against wake-sleep, for several latent sizes Nz, on MNIST and Frey Face."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .common import (
    LRS,
    SETUPS,
    draw_curves,
    fit_curve,
    load_data,
    mean_elbo,
    out_dir,
    plots,
    progress_bar,
    write_csv,
)

METHODS = ("aevb", "wake-sleep")
DEFAULT_BUDGET = {"mnist": 1_000_000, "frey-face": 1_000_000}  # training samples per curve; <= 30 min on 2 cores
FULL_BUDGET = 100_000_000  # the paper's x-axis ends at 10^8
SELECT = 20_000  # training samples each candidate step size gets before one is chosen


def run(
    dataset: str,
    budget: int,
    out: str,
    data_dir: str | None = None,
    latents: Sequence[int] | None = None,
    points: int = 10,
    n_eval: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> list[Path]:
    """Train AEVB and wake-sleep for every Nz; write figure2-<dataset>.csv and .png into `out`."""
    setup = SETUPS[dataset]
    latents = tuple(latents or setup.latents)
    folder = out_dir(out)
    data = load_data(setup, data_dir, n_eval=n_eval)
    select = min(SELECT, budget)
    rows = []
    total = len(latents) * len(METHODS) * (budget + (len(LRS) - 1) * select)
    with progress_bar(total, f"figure 2 ({dataset})", progress) as bar:
        for nz in latents:
            config = setup.model_config(data.shape, nz)
            for method in METHODS:
                bar.set_postfix_str(f"{method} Nz={nz}")
                curve = fit_curve(
                    method, config, data, budget, points, mean_elbo, "elbo", seed, LRS, select, bar.update
                )
                for r in curve.records:
                    rows.append({"dataset": dataset, "method": method, "latent_dim": nz, "lr": curve.lr, **r})
    csv_path = write_csv(folder / f"figure2-{dataset}.csv", rows)
    png_path = plot(rows, folder / f"figure2-{dataset}.png", dataset, data.eval_train.shape[0], budget)
    return [csv_path, png_path]


def plot(rows: list[dict], path: Path, dataset: str, n_eval: int, budget: int) -> Path:
    """One panel per Nz: the bound against training samples (log scale); solid test, dashed train."""
    from ..plots import save

    plt = plots()
    latents = sorted({int(r["latent_dim"]) for r in rows})
    fig, axes = plt.subplots(1, len(latents), figsize=(3.2 * len(latents), 3.4), squeeze=False)
    for ax, nz in zip(axes[0], latents):
        draw_curves(ax, [r for r in rows if int(r["latent_dim"]) == nz], METHODS, "elbo", True, 6)
        ax.set_title(f"{dataset}, $N_z$ = {nz}", fontsize=10)
    axes[0][0].set_ylabel("ELBO, nats per example")
    fig.suptitle(
        f"Figure 2 (reduced: {budget:.0e} samples per curve; bound on {n_eval} train / {n_eval} test points)",
        fontsize=9,
    )
    fig.tight_layout()
    return save(fig, path)
