"""Figure 3: importance-sampled marginal log-likelihood against training samples evaluated, for
training sets of 1000 and 50000 MNIST points: AEVB, wake-sleep and Monte Carlo EM (Nz = 3, 100
hidden units). log p(x) is `aevb.evaluate.log_likelihood` with k samples from each model's encoder
(for MCEM, the encoder fitted alongside as a proposal; see aevb.reproduce.mcem)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .common import (
    LRS,
    SETUPS,
    draw_curves,
    fit_curve,
    load_data,
    mean_log_likelihood,
    out_dir,
    plots,
    progress_bar,
    write_csv,
)

METHODS = ("aevb", "wake-sleep", "mcem")
TRAIN_SIZES = (1000, 50000)
LATENT, HIDDEN = 3, 100
DEFAULT_BUDGET = 500_000  # training samples per curve; <= 30 min on 2 cores
FULL_BUDGET = 60_000_000
SELECT = 10_000


def run(
    budget: int,
    out: str,
    data_dir: str | None = None,
    train_sizes: Sequence[int] = TRAIN_SIZES,
    methods: Sequence[str] = METHODS,
    k: int = 100,
    points: int = 6,
    n_eval: int = 500,
    seed: int = 0,
    progress: bool = True,
) -> list[Path]:
    """Train every method on every training-set size; write figure3.csv and figure3.png into `out`."""
    setup = SETUPS["mnist"]
    folder = out_dir(out)
    evaluate = mean_log_likelihood(k)
    select = min(SELECT, budget)
    rows = []
    total = len(train_sizes) * len(methods) * (budget + (len(LRS) - 1) * select)
    with progress_bar(total, "figure 3", progress) as bar:
        for n_train in train_sizes:
            data = load_data(setup, data_dir, n_train=n_train, n_eval=n_eval)
            config = setup.model_config(data.shape, LATENT, HIDDEN)
            for method in methods:
                bar.set_postfix_str(f"{method} N={n_train}")
                curve = fit_curve(
                    method, config, data, budget, points, evaluate, "log_px", seed, LRS, select, bar.update
                )
                for r in curve.records:
                    rows.append({"method": method, "n_train": n_train, "lr": curve.lr, "k": k, **r})
    csv_path = write_csv(folder / "figure3.csv", rows)
    return [csv_path, plot(rows, folder / "figure3.png", budget, k, min(n_eval, min(train_sizes)), n_eval)]


def plot(rows: list[dict], path: Path, budget: int, k: int, n_eval_train: int, n_eval: int) -> Path:
    """One panel per training-set size; solid test, dashed train."""
    from ..plots import save

    plt = plots()
    sizes = sorted({int(r["n_train"]) for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 3.8), squeeze=False)
    for ax, n in zip(axes[0], sizes):
        draw_curves(ax, [r for r in rows if int(r["n_train"]) == n], METHODS, "log_px", False, 7)
        ax.set_title(f"MNIST, $N_{{train}}$ = {n}, $N_z$ = 3", fontsize=10)
        ax.set_ylabel(f"log p(x), nats (importance sampled, k = {k})")
    fig.suptitle(
        f"Figure 3 (reduced: {budget:.0e} samples per curve; {n_eval_train}+ train / {n_eval} test points)", fontsize=9
    )
    fig.tight_layout()
    return save(fig, path)
