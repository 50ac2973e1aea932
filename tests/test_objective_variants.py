"""The training objectives' variants against ground truth: beta / KL warm-up / free bits (the regularised
ELBO), active units, and IWAE training. Tiny models on the built-in `digits`."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import aevb
from aevb import VAE, ModelConfig, TrainConfig, elbo, iwae
from aevb.evaluate import active_units, posterior_mean_variance
from aevb.objectives import kl_per_dim, regularised_elbo
from aevb.preprocess import split
from aevb.train import kl_weight_at


@pytest.fixture(scope="module")
def trained(digits_elbo_and_iwae_models) -> dict:
    """The session's ELBO- and IWAE-trained digits models (conftest.py)."""
    return digits_elbo_and_iwae_models


def _x(digits, name="test"):
    return split(digits, name, "dynamic")


# -- beta-VAE, KL warm-up, free bits ---------------------------------------------------------------


@pytest.mark.slow
def test_regularised_elbo_against_the_elbo_terms(trained, digits):
    model, x = trained["elbo"], _x(digits)[:50]
    eps = torch.randn(3, 50, 8, generator=torch.Generator().manual_seed(1))
    t = elbo(model, x, samples=3, eps=eps)
    assert torch.equal(regularised_elbo(model, x, 1.0, 0.0, 3, eps=eps), t.elbo)
    torch.testing.assert_close(regularised_elbo(model, x, 0.25, 0.0, 3, eps=eps), t.log_px_z - 0.25 * t.kl)
    # free bits: sum_j max(lambda, KL_j), with KL_j of each dimension from torch's own kl_divergence
    q = model.encode(x)
    per_dim = kl_divergence(q.base_dist, Normal(torch.zeros(8), torch.ones(8)))  # (B, Dz)
    torch.testing.assert_close(kl_per_dim(q, None), per_dim)
    lam = 0.5
    expected = t.log_px_z - 2.0 * per_dim.clamp(min=lam).sum(-1)
    torch.testing.assert_close(regularised_elbo(model, x, 2.0, lam, 3, eps=eps), expected)
    assert (per_dim < lam).any()  # the clamp was exercised
    # estimator A's per-dimension KL sums to its KL
    z = q.base_dist.loc + q.base_dist.scale * eps
    tm = elbo(model, x, samples=3, estimator="mc", eps=eps)
    torch.testing.assert_close(kl_per_dim(q, z, "mc").sum(-1), tm.kl)


def test_free_bits_stop_the_gradient_of_small_kl_dimensions():
    model = VAE(ModelConfig(data_shape=(6,), latent_dim=2, hidden=(), likelihood="gaussian"))
    x = torch.randn(4, 6)
    eps = torch.zeros(1, 4, 2)
    with torch.no_grad():  # dimension 0 carries ~0 nats, dimension 1 many
        model.encoder.net[0].weight.zero_()
        model.encoder.net[0].bias.copy_(torch.tensor([0.0, 5.0, 0.0, 0.0]))
    grads = []
    for weight in (1.0, 0.0):  # with free bits of 1 nat, and the reconstruction term alone
        model.zero_grad()
        regularised_elbo(model, x, weight, 1.0, eps=eps).sum().backward()
        grads.append(model.encoder.net[0].bias.grad.clone())
    fb, rec = grads
    assert fb[0] == rec[0] and fb[2] == rec[2]  # mean and log-variance of the free dimension: no KL gradient
    assert abs(fb[1] - rec[1]) > 1  # the busy dimension is pulled to the prior: d KL / d mu = mu = 5 per example


def test_kl_weight_schedule_and_training_logs_the_objective(digits):
    c = TrainConfig(beta=2.0, kl_warmup=2)
    assert kl_weight_at(c, 1, 0, 100) == 0.0
    assert kl_weight_at(c, 1, 50, 100) == pytest.approx(0.5)
    assert kl_weight_at(c, 2, 50, 100) == pytest.approx(1.5)
    assert kl_weight_at(c, 5, 0, 100) == 2.0 and kl_weight_at(TrainConfig(beta=0.3), 1, 0, 10) == 0.3
    with pytest.raises(ValueError, match="apply to --objective elbo"):
        TrainConfig(objective="iwae", beta=2.0)
    records = []
    cfg = TrainConfig(epochs=3, kl_warmup=2, free_bits=0.1, beta=1.0)
    aevb.train(ModelConfig(latent_dim=4, hidden=(32,)), cfg, dataset=digits, on_epoch=records.append)
    assert all("train_objective" in r and "train_elbo" not in r for r in records)
    assert records[-1]["valid_elbo"] > records[0]["valid_elbo"]


@pytest.mark.slow
def test_beta_trades_kl_for_reconstruction(digits):
    """Across beta (same seed and budget), the validation KL falls as beta grows, and the active units too."""
    kls, active = [], []
    for beta in (0.2, 1.0, 5.0):
        rec = []
        m = aevb.train(
            ModelConfig(latent_dim=8, hidden=(64,)),
            TrainConfig(epochs=15, beta=beta),
            dataset=digits,
            on_epoch=rec.append,
        )
        kls.append(rec[-1]["valid_kl"])
        active.append(active_units(m, _x(digits, "valid")))
    assert kls[0] > kls[1] > kls[2]
    assert active[0] >= active[1] >= active[2] and active[0] > active[2]


def test_active_units_count_the_dimensions_whose_posterior_mean_varies():
    model = VAE(ModelConfig(data_shape=(6,), latent_dim=3, hidden=(), likelihood="gaussian"))
    with torch.no_grad():
        w = model.encoder.net[0].weight
        w.zero_()
        w[0, 0], w[1, 1], w[2, 2] = 1.0, 0.05, 0.2  # Var of the means: Var(x0), 0.0025 Var(x1), 0.04 Var(x2)
    x = torch.randn(2000, 6, generator=torch.Generator().manual_seed(0))
    var = posterior_mean_variance(model, x)
    expected = torch.stack([x[:, 0], 0.05 * x[:, 1], 0.2 * x[:, 2]], 1).double().var(0)
    torch.testing.assert_close(var, expected)
    assert active_units(model, x) == 2  # 1 and 0.04 > 0.01; 0.0025 is not


# -- IWAE -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_iwae_bound_tightens_with_k_on_trained_models(trained, digits):
    x = _x(digits)
    for model in trained.values():
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            bounds = [torch.stack([iwae(model, x, k, g) for _ in range(4)]).mean() for k in (1, 5, 50)]
        assert bounds[0] < bounds[1] < bounds[2]
    # IWAE-trained models keep a larger gap between L_1 and L_50 (Burda et al. 2016: q is spread wider)
    gaps = {}
    for name, model in trained.items():
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            gaps[name] = (iwae(model, x, 50, g) - iwae(model, x, 1, g)).mean().item()
    assert gaps["iwae"] > 2 * gaps["elbo"]
