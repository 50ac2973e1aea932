"""`--standardize` on a real table (ADBench satellite, raw features 27..157): the model is the one trained on
the pre-standardised table, and its densities are that model's moved back to the data's units by the
change of variables, log p(x) = log p'(x') - sum_j log s_j."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import aevb
from aevb import ModelConfig, TrainConfig, log_likelihood
from aevb.data import Dataset

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def tables(shared_data):
    """Satellite as aevb splits it, raw, and pre-standardised with the training split's mean and std."""
    raw = aevb.load_dataset(str(shared_data / "adbench" / "30_satellite.npz"))
    mean, std = raw.train.double().mean(0), raw.train.double().std(0, unbiased=False)
    pre = {s: ((getattr(raw, s).double() - mean) / std).float() for s in ("train", "valid", "test")}
    return raw, Dataset("satellite-standardised", raw.shape, **pre), std


@pytest.mark.slow
def test_standardized_training_is_training_on_the_standardized_table(tables):
    raw, pre, std = tables
    m = ModelConfig(hidden=(64,), latent_dim=4, activation="relu", likelihood="gaussian-learned")
    t = TrainConfig(epochs=2, seed=0)
    a = aevb.train(ModelConfig(**{**m.__dict__, "standardize": True}), t, dataset=raw)
    b = aevb.train(m, t, dataset=pre)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=2e-4, rtol=0, msg=name)
    torch.testing.assert_close(a.data_scale.double(), std, rtol=1e-6, atol=0)
    # the change of variables: the same model's density in raw units is lower by sum_j log s_j
    b.load_state_dict({k: v for k, v in a.state_dict().items() if not k.startswith("data_")})
    ll_raw = log_likelihood(a, raw.test[:100], k=200)
    ll_pre = log_likelihood(b, pre.test[:100], k=200)
    torch.testing.assert_close(ll_raw, ll_pre - std.log().sum().float(), atol=2e-3, rtol=0)
    assert std.log().sum() > 100  # raw units: the correction is large, so a missing one cannot pass
    # samples come back in the data's units
    x = a.sample(2000, torch.Generator().manual_seed(0), mean=False)
    assert abs(x.mean() - raw.train.mean()) < 0.1 * raw.train.std()


def test_standardize_is_refused_for_likelihoods_of_non_real_data():
    with pytest.raises(ValueError, match="standardize is for the likelihoods gaussian, gaussian-learned"):
        ModelConfig(likelihood="bernoulli", standardize=True)


@pytest.mark.slow
def test_cli_standardize_saves_and_reloads_the_scaling(tmp_path, shared_data):
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    table = shared_data / "adbench" / "30_satellite.npz"
    args = ["--dataset", table, "--likelihood", "gaussian-learned", "--hidden", "32", "--latent-dim", "4"]
    r = subprocess.run(
        [sys.executable, "-m", "aevb", "train", *map(str, args), "--standardize", "--epochs", "2", "--out", "run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    model = aevb.load(tmp_path / "run")
    x = np.load(table, allow_pickle=False)["X"]
    assert model.config.standardize and abs(model.data_shift.mean().item() - x.mean()) < 2.0
    assert (model.data_scale > 1).all()  # the raw features' spread, not 1
