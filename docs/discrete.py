"""Regenerates the "Counts, classes and mixed tables" section of docs/variants.md (issue 8, item 7).

Usage: OMP_NUM_THREADS=1 python docs/discrete.py   (about half a minute on one CPU core)

1. digits as counts: the built-in 8x8 digits are counts 0..16 (on-pixels of a 4x4 block of the original
   32x32 bitmap); aevb stores them / 16, so x = 16 * stored. Scored on the 300 test digits.
2. a synthetic mixed table with a known 2-D latent (tests/test_discrete_likelihoods.py's `_mixed`):
   3 Gaussian, 1 four-class and 2 count columns; train / valid / test rows 2000 / 500 / 500.
Every model: latent 8 (digits) or 2 (table), one ReLU hidden layer of 64, Adam lr 3e-3, M = 100,
40 / 30 epochs, seed 0; test log p(x) importance-sampled with k = 500, nats per example, ± the standard error.
The baselines are the best models with independent columns, fitted on the training rows.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.distributions import Categorical, Normal, Poisson

import aevb
from aevb import ModelConfig, TrainConfig
from aevb.data.dataset import Dataset
from aevb.evaluate import summarize
from aevb.plots import image_grid, save

FIG = Path(__file__).resolve().parent / "figures" / "variants"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_discrete_likelihoods import SPEC, _mixed  # noqa: E402  (the same generating model as the test)


def row(name: str, values: torch.Tensor) -> str:
    m, se = summarize(values)
    return f"| {name} | {m:.2f} ± {se:.2f} |"


def main() -> None:
    torch.manual_seed(0)
    d = aevb.load_dataset("digits")
    ds = Dataset("digits-counts", (8, 8), *(torch.round(getattr(d, s) * 16) for s in ("train", "valid", "test")))
    xtr, x = ds.train.reshape(-1, 64), ds.test.reshape(-1, 64)
    lines = ["| digits as counts (0..16) | test log p(x) |", "|---|---|"]
    freq = torch.stack([(xtr == k).sum(0) for k in range(17)], -1).float() + 1
    poisson = Poisson(xtr.mean(0).clamp(min=1e-3)).log_prob(x).sum(-1)
    lines.append(row("independent Poisson columns (training means)", poisson))
    lines.append(
        row("independent categorical columns (add-one frequencies)", Categorical(freq).log_prob(x.long()).sum(-1))
    )
    images = [ds.test[:32] / 16]
    for lik, extra in (("poisson", {}), ("categorical", {"categories": 17})):
        mc = ModelConfig(latent_dim=8, hidden=(64,), activation="relu", likelihood=lik, **extra)
        model = aevb.train(mc, TrainConfig(epochs=40, seed=0, lr=3e-3), dataset=ds)
        flag = "--likelihood " + lik + (" --categories 17" if extra else "")
        lines.append(row(f"VAE, `{flag}`", aevb.log_likelihood(model, x, k=500, seed=0)))
        images.append(model.sample(32, generator=torch.Generator().manual_seed(0), mean=False) / 16)
    fig = image_grid(torch.cat(images).numpy(), ncols=16)
    save(fig, FIG / "discrete-digits.png")

    t = _mixed(3000)
    ds = Dataset("mixed", (6,), t[:2000], t[2000:2500], t[2500:])
    xtr, x = ds.train, ds.test
    p = torch.stack([(xtr[:, 3] == k).float().mean() for k in range(4)])
    independent = (
        Normal(xtr[:, :3].mean(0), xtr[:, :3].std(0)).log_prob(x[:, :3]).sum(-1)
        + Categorical(probs=p).log_prob(x[:, 3].long())
        + Poisson(xtr[:, 4:].mean(0)).log_prob(x[:, 4:]).sum(-1)
    )
    mc = ModelConfig(latent_dim=2, hidden=(64,), activation="relu", likelihood="mixed", columns=SPEC)
    model = aevb.train(mc, TrainConfig(epochs=30, seed=0, lr=3e-3), dataset=ds)
    lines += ["", "| mixed table (3 Gaussian, 1 class, 2 count columns) | test log p(x) |", "|---|---|"]
    lines.append(row("independent columns (Gaussian, class frequencies, Poisson)", independent))
    lines.append(row(f"VAE, `--likelihood mixed --columns {SPEC}`", aevb.log_likelihood(model, x, k=500, seed=0)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
