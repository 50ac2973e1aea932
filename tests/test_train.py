"""`aevb.train`: bitwise resume for each optimiser and objective, divergence, and learning on real data."""

import json

import numpy as np
import pytest
import torch

import aevb
from aevb.checkpoint import load_checkpoint
from aevb.evaluate import elbo_terms
from aevb.preprocess import split
from aevb.rundir import read_metrics

SMALL = aevb.ModelConfig(hidden=(32,), latent_dim=2)


def _params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
@pytest.mark.parametrize(
    "train_kw",
    [
        dict(optimizer="adam"),
        dict(optimizer="adagrad", lr=0.02, weight_decay=1e-4),
        dict(optimizer="sgd", lr=0.01, estimator="mc", samples=2),
        dict(objective="iwae", k=4),
    ],
)
def test_resume_is_bitwise_equal_to_an_uninterrupted_run(tmp_path, digits, train_kw):
    cfg = aevb.TrainConfig(epochs=4, seed=3, **train_kw)
    whole = aevb.train(SMALL, cfg, tmp_path / "whole", dataset=digits)
    aevb.train(SMALL, aevb.TrainConfig(**{**cfg.__dict__, "epochs": 2}), tmp_path / "part", dataset=digits)
    assert aevb.train(None, None, tmp_path / "part", dataset=digits, resume=True)  # no-op: stored epochs = 2
    assert [r["epoch"] for r in read_metrics(tmp_path / "part")] == [1, 2]
    resumed = aevb.train(None, aevb.TrainConfig(epochs=4), tmp_path / "part", dataset=digits, resume=True)
    _assert_same(_params(whole), _params(resumed))
    # the optimiser state and the RNG stream were restored too, not only the weights
    m1, m2 = aevb.VAE(whole.config), aevb.VAE(whole.config)
    o1, o2 = torch.optim.Adam(m1.parameters()), torch.optim.Adam(m2.parameters())
    if train_kw.get("optimizer", "adam") == "adam":
        g1, g2 = torch.Generator(), torch.Generator()
        s1 = load_checkpoint(tmp_path / "whole", m1, o1, g1)
        s2 = load_checkpoint(tmp_path / "part", m2, o2, g2)
        assert s1["epoch"] == s2["epoch"] == 4 and s1["step"] == s2["step"] == 4 * 13
        assert torch.equal(g1.get_state(), g2.get_state())
        for p1, p2 in zip(m1.parameters(), m2.parameters()):
            assert torch.equal(o1.state[p1]["exp_avg_sq"], o2.state[p2]["exp_avg_sq"])
    epochs = [r["epoch"] for r in read_metrics(tmp_path / "part")]
    assert epochs == [1, 2, 3, 4]
    assert json.loads((tmp_path / "part" / "config.json").read_text())["train"]["epochs"] == 4


def test_divergence_stops_with_a_clear_error(tmp_path):
    x = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32) * 1e3
    np.save(tmp_path / "big.npy", x)
    cfg = aevb.TrainConfig(dataset=str(tmp_path / "big.npy"), epochs=3, optimizer="sgd", lr=1e6)
    msg = r"diverged at step 2 \(epoch 1, batch 2 of 2\): the loss is NaN or inf; .* has no checkpoint yet"
    with pytest.raises(aevb.AevbError, match=msg):
        aevb.train(aevb.ModelConfig(likelihood="gaussian"), cfg, tmp_path / "r")
    aevb.load(tmp_path / "r")  # the initial weights stay loadable


@pytest.mark.slow
def test_gaussian_learned_on_frey_face(shared_data):
    ds = aevb.load_dataset("frey-face", shared_data)
    cfg = aevb.ModelConfig(hidden=(200,), latent_dim=5, likelihood="gaussian-learned", logvar_min=-6.0)
    records = []
    model = aevb.train(cfg, aevb.TrainConfig(epochs=15, lr=3e-3), dataset=ds, on_epoch=records.append)
    assert model.config.data_shape == (28, 20)
    # a per-pixel variance is learned: the bound on the [0, 1]-scaled faces becomes positive
    # (a density, not a probability), far above the fixed unit-variance bound of about -560 * 0.92
    assert records[-1]["valid_elbo"] > records[0]["valid_elbo"] + 50
    assert records[-1]["valid_elbo"] > 300
    std = model.decode(model.encode(ds.test).mean).base_dist.scale
    assert std.min() >= np.exp(-3.0) - 1e-6  # the clamp at logvar_min = -6 holds


@pytest.mark.slow
def test_mnist_training_reaches_the_documented_level(shared_data):
    """README, Tests: 784-400-20 ReLU, Adam 1e-3, M=100, 6 epochs (~15 s): test ELBO > -108 nats."""
    ds = aevb.load_dataset("mnist", shared_data)
    x_test = split(ds, "test", "dynamic")
    cfg = aevb.ModelConfig(hidden=(400,), latent_dim=20, activation="relu")
    untrained = elbo_terms(aevb.VAE(aevb.ModelConfig(**{**cfg.__dict__, "data_shape": (28, 28)})), x_test)
    model = aevb.train(cfg, aevb.TrainConfig(dataset="mnist", epochs=6, seed=0), dataset=ds)
    terms = elbo_terms(model, x_test)
    assert untrained.elbo.mean() < -400
    assert terms.elbo.mean() > -108.0
    assert 15 < terms.kl.mean() < 40  # the latent is used (no posterior collapse)
