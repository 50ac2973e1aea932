"""The paper's baselines and `aevb reproduce`: HMC against a known Gaussian, wake-sleep and MCEM
against the exact log-likelihood of a 2-D latent model (by quadrature), every figure end to end."""

from __future__ import annotations

import csv
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from aevb import VAE, ModelConfig, load_dataset
from aevb.evaluate import elbo_terms
from aevb.likelihoods import LIKELIHOODS
from aevb.preprocess import binarize_once
from aevb.reproduce.common import Learner
from aevb.reproduce.hmc import HMC
from aevb.reproduce.mcem import MCEM
from aevb.reproduce.wake_sleep import wake_sleep_loss
from aevb_process import aevb_main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# --- HMC -----------------------------------------------------------------------------------------

MEAN = torch.tensor([1.0, -2.0])
COV = torch.tensor([[2.0, 0.9], [0.9, 0.6]])  # correlated, unequal scales


def _target():
    return MultivariateNormal(MEAN, COV).log_prob


def test_hmc_reaches_its_target_acceptance():
    g = torch.Generator().manual_seed(0)
    hmc = HMC(n_leapfrog=10, step_size=1.0, target_accept=0.9)  # far too large a step to start with
    z = torch.zeros(1000, 2)
    for _ in range(150):
        z, _ = hmc.step(_target(), z, g)
    rates = [hmc.step(_target(), z, g, adapt=False)[1].mean().item() for _ in range(20)]
    assert abs(np.mean(rates) - 0.9) < 0.04
    assert 0.05 < hmc.step_size < 1.0


def test_hmc_leaves_a_gaussian_invariant():
    g = torch.Generator().manual_seed(1)
    z0 = MultivariateNormal(MEAN, COV).sample((20000,))  # exact draws from the target
    hmc = HMC(step_size=0.15, adapt_rate=0.0)
    z = z0
    for _ in range(10):
        z, _ = hmc.step(_target(), z, g, adapt=False)
    assert hmc.accept_rate > 0.7  # it moved
    assert torch.corrcoef(torch.stack([z0[:, 0], z[:, 0]]))[0, 1] < 0.8  # and far
    assert torch.allclose(z.mean(0), MEAN, atol=0.04)
    assert torch.allclose(torch.cov(z.T), COV, atol=0.06)


def test_hmc_converges_to_a_gaussian_from_a_wrong_start():
    g = torch.Generator().manual_seed(2)
    hmc = HMC()
    samples = hmc.sample(_target(), torch.full((2000, 2), 5.0), 60, g)[-20:].reshape(-1, 2)
    assert torch.allclose(samples.mean(0), MEAN, atol=0.06)
    assert torch.allclose(torch.cov(samples.T), COV, atol=0.1)


# --- wake-sleep and MCEM on a 2-D latent model: exact log p(x) by quadrature -----------------------


def quadrature_log_px(model: VAE, x: torch.Tensor, step: float = 0.05, width: float = 5.0) -> torch.Tensor:
    """log p(x) = log ∫ p(x|z) p(z) dz on a grid of the 2-D latent (Bernoulli decoder), (N,) nats."""
    v = torch.arange(-width, width + step / 2, step)
    z = torch.cartesian_prod(v, v)  # (G, 2)
    with torch.no_grad():
        logits = model.decoder(z)  # (G, D)
        log_px_z = x @ logits.T - torch.nn.functional.softplus(logits).sum(-1)  # (N, G)
        log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
    return torch.logsumexp(log_px_z + log_pz, dim=1) + 2 * math.log(step)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return binarize_once(load_dataset("digits").train.reshape(-1, 64)[:300], 0)


def _model(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(ModelConfig(data_shape=(64,), latent_dim=2, hidden=(64,), init="normal", init_std=0.01))


def _fit(learner, x: torch.Tensor, epochs: int, g: torch.Generator) -> None:
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0], 50):
            idx = perm[i : i + 50]
            learner.step(x[idx], idx)


@pytest.mark.slow
def test_quadrature_is_converged(digits):
    model = _model()
    coarse, fine = quadrature_log_px(model, digits, 0.1), quadrature_log_px(model, digits, 0.05)
    assert (coarse - fine).abs().max() < 1e-3


@pytest.mark.slow
def test_wake_sleep_improves_the_likelihood_and_the_bound(digits):
    model, g = _model(), torch.Generator().manual_seed(0)
    before_ll, before_elbo = quadrature_log_px(model, digits).mean(), elbo_terms(model, digits).elbo.mean()
    _fit(Learner(model, wake_sleep_loss, lr=0.05, weight_decay=1 / 300, generator=g), digits, 40, g)
    after_ll, after_elbo = quadrature_log_px(model, digits).mean(), elbo_terms(model, digits).elbo.mean()
    assert after_ll > before_ll + 5.0  # exact log p(x), nats per example
    assert after_elbo > before_elbo + 5.0  # the same estimator as AEVB's
    assert after_elbo <= after_ll + 0.1  # a lower bound


@pytest.mark.slow
def test_mcem_improves_the_likelihood_and_tunes_hmc(digits):
    model, g = _model(), torch.Generator().manual_seed(0)
    before = quadrature_log_px(model, digits).mean()
    mcem = MCEM(model, lr=0.05, n_train=digits.shape[0], weight_decay=1 / 300, generator=g, fit_encoder=False)
    decoder_before = [p.detach().clone() for p in model.encoder.parameters()]
    _fit(mcem, digits, 15, g)
    after = quadrature_log_px(model, digits).mean()
    assert after > before + 5.0
    assert abs(mcem.hmc.accept_rate - 0.9) < 0.1
    # without fit_encoder the encoder is untouched: MCEM learns the decoder only
    assert all(torch.equal(a, b) for a, b in zip(decoder_before, model.encoder.parameters()))


def test_squashed_gaussian_likelihood_matches_torch():
    config = ModelConfig(data_shape=(3,), likelihood="gaussian-learned-sigmoid")
    h = torch.randn(4, 6)
    x = torch.rand(4, 3)
    expected = Normal(torch.sigmoid(h[:, :3]), torch.exp(0.5 * h[:, 3:])).log_prob(x).sum(-1)
    assert torch.allclose(LIKELIHOODS["gaussian-learned-sigmoid"](config)(h).log_prob(x), expected)


# --- `aevb reproduce` end to end ----------------------------------------------------------------


def _aevb(cwd: Path, *args) -> subprocess.CompletedProcess:
    """`aevb ...` through `aevb.cli.main` in this process (a subprocess each spent ~2 s importing torch)."""
    return aevb_main(cwd, list(args))


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_reproduce_commands_end_to_end(tmp_path, shared_data):
    common = ["--data-dir", shared_data, "--no-progress", "--points", "2"]
    commands = {
        "figure2": ["reproduce", "figure2", "--dataset", "frey-face", "--latents", "2", "--budget", "600",
                    "--eval-n", "100", "--out", tmp_path / "f2", *common],
        "figure3": ["reproduce", "figure3", "--budget", "400", "--train-sizes", "200", "--k", "20",
                    "--eval-n", "50", "--out", tmp_path / "f3", *common],
        "figure4": ["reproduce", "figure4", "--budget", "300", "--grid", "3", "--eval-n", "50",
                    "--out", tmp_path / "f4", *common],
        "figure5": ["reproduce", "figure5", "--budget", "300", "--latents", "2", "5", "--eval-n", "50",
                    "--out", tmp_path / "f5", *common],
        "bad_budget": ["reproduce", "figure2", "--budget", "0"],
        "too_many": ["reproduce", "figure3", "--train-sizes", "60000", "--data-dir", shared_data,
                     "--out", tmp_path / "f6"],
    }  # fmt: skip
    res = {k: _aevb(tmp_path, *v) for k, v in commands.items()}
    for name in ("figure2", "figure3", "figure4", "figure5"):
        assert res[name].returncode == 0, res[name].stderr
        for line in res[name].stdout.split():
            path = Path(line)
            assert path.exists()
            if path.suffix == ".png":
                assert path.read_bytes()[:8] == PNG_MAGIC

    f2 = _rows(tmp_path / "f2" / "figure2-frey-face.csv")
    assert {r["method"] for r in f2} == {"aevb", "wake-sleep"}
    for method in ("aevb", "wake-sleep"):
        rs = [r for r in f2 if r["method"] == method]
        assert int(rs[-1]["examples"]) >= 600
        assert float(rs[0]["lr"]) in (0.01, 0.02, 0.1)
        assert all(math.isfinite(float(r["test_elbo"])) for r in rs)

    f3 = _rows(tmp_path / "f3" / "figure3.csv")
    assert {r["method"] for r in f3} == {"aevb", "wake-sleep", "mcem"}
    for r in f3:
        assert int(r["k"]) == 20 and int(r["n_train"]) == 200
        # a Bernoulli log-likelihood of 784 pixels, below 0 and above the uniform model's -784 log 2
        assert -784 * math.log(2) - 1 < float(r["test_log_px"]) < 0

    for name in ("frey-face", "mnist"):
        assert (tmp_path / "f4" / f"figure4-{name}.png").exists()
        assert {r["latent_dim"] for r in _rows(tmp_path / "f4" / f"figure4-{name}.csv")} == {"2"}
    assert {r["latent_dim"] for r in _rows(tmp_path / "f5" / "figure5.csv")} == {"2", "5"}

    assert res["bad_budget"].returncode == 2 and res["bad_budget"].stderr.startswith("aevb: error:")
    assert res["too_many"].returncode == 1
    assert res["too_many"].stderr.strip().splitlines() == [
        "aevb: error: mnist has 50000 training points; 60000 were asked for"
    ]
    assert not (tmp_path / "f6").exists()  # the folder the failed figure created is gone
