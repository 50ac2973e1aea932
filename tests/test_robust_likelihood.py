"""The `gaussian-robust` likelihood (a learned Gaussian per feature mixed with a Cauchy(0, 1) background),
the anomaly detector's default, against torch.distributions and the closed forms, and in the detector:
training anomalies that a `gaussian-learned` decoder absorbs with a large variance stay improbable."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Cauchy, Normal

import aevb
from aevb.config import ModelConfig, from_dict, to_dict
from aevb.likelihoods import LearnedGaussianLikelihood, RobustGaussianLikelihood, make_likelihood
from aevb.objectives import decoder_log_prob


def _mixture_log_prob(h: torch.Tensor, x: torch.Tensor, w: float, lo: float = -9.0, hi: float = 6.0):
    """sum_d log[(1 - w) N(x_d; mu_d, sigma_d^2) + w Cauchy(x_d; 0, 1)] from torch.distributions."""
    mu, logvar = h.chunk(2, dim=-1)
    normal = Normal(mu, torch.exp(0.5 * logvar.clamp(lo, hi))).log_prob(x).exp()
    background = Cauchy(torch.zeros_like(x), torch.ones_like(x)).log_prob(x).exp()
    return torch.log((1 - w) * normal + w * background).sum(-1)


@pytest.mark.parametrize("w", [0.01, 0.2, 0.7])
def test_log_prob_is_the_mixture_of_torch_normal_and_cauchy(w):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(5, 2 * 7, generator=g, dtype=torch.float64) * 2  # some log-variances hit the clamp
    x = torch.randn(5, 7, generator=g, dtype=torch.float64) * 4
    head = RobustGaussianLikelihood(outlier_weight=w, logvar_min=-4.0, logvar_max=2.0)
    expected = _mixture_log_prob(h, x, w, -4.0, 2.0)
    torch.testing.assert_close(head(h).log_prob(x), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(head.log_prob(h, x), expected, rtol=1e-12, atol=1e-12)
    # the fused form broadcasts x over leading sample dimensions, like the other heads
    hs = torch.stack([h, h + 0.5])
    torch.testing.assert_close(head.log_prob(hs, x), torch.stack([expected, _mixture_log_prob(h + 0.5, x, w, -4, 2)]))


def test_cost_of_a_value_far_outside_is_bounded_below_by_the_background_and_grows_with_distance():
    head = RobustGaussianLikelihood(outlier_weight=0.2)
    h = torch.tensor([[0.0, math.log(0.01)]])  # mu = 0, sigma = 0.1
    x = torch.tensor([[5.0], [10.0], [50.0]], dtype=torch.float32)
    cost = -head.log_prob(h, x)
    # far out the Gaussian is negligible: the cost is the background's, -log(w / pi) + log(1 + x^2)
    torch.testing.assert_close(cost, -math.log(0.2 / math.pi) + torch.log1p(x.squeeze(1) ** 2))
    learned = -LearnedGaussianLikelihood()(h).log_prob(x)
    assert (cost < learned).all() and (cost[1:] > cost[:-1]).all()
    # near the mean the Gaussian dominates: log p differs from gaussian-learned's by log(1 - w + w C/N), close
    # to log(1 - w) (C, N: the two densities at x = 0.05, 0.3175 and 3.521)
    near = torch.tensor([[0.05]])
    diff = (head.log_prob(h, near) - LearnedGaussianLikelihood()(h).log_prob(near)).item()
    c, n = 1 / (math.pi * (1 + 0.05**2)), math.exp(-0.5 * 0.5**2) / (0.1 * math.sqrt(2 * math.pi))
    assert diff == pytest.approx(math.log(0.8 + 0.2 * c / n), abs=1e-5) and abs(diff - math.log(0.8)) < 0.025


def test_draws_follow_the_mixture_and_are_reproducible():
    w = 0.2
    head, h = RobustGaussianLikelihood(outlier_weight=w), torch.zeros(200_000, 2)  # mu = 0, sigma = 1
    p = head(h)
    a, b = head.sample(h, torch.Generator().manual_seed(1)), head.sample(h, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (200_000, 1)
    # P(|x| > t) = (1 - w) P(|N| > t) + w P(|Cauchy| > t), for two thresholds
    for t in (1.0, 5.0):
        expected = (1 - w) * math.erfc(t / math.sqrt(2)) + w * (1 - 2 / math.pi * math.atan(t))
        assert abs((a.abs() > t).double().mean().item() - expected) < 0.004
    assert torch.equal(p.mean, torch.zeros(200_000, 1))  # the Gaussian component's mean


def test_config_round_trip_and_bad_weight():
    c = ModelConfig(data_shape=(4,), likelihood="gaussian-robust", outlier_weight=0.3, logvar_min=-4.0)
    assert from_dict(to_dict(c))[0] == c
    head = make_likelihood(c)
    assert isinstance(head, RobustGaussianLikelihood) and head.outlier_weight == 0.3 and head.logvar_min == -4.0
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="outlier_weight must be in"):
            ModelConfig(data_shape=(4,), likelihood="gaussian-robust", outlier_weight=bad)
    mixed = ModelConfig(data_shape=(5,), likelihood="mixed", columns="gaussian-robust:3,poisson:2")
    vae = aevb.VAE(mixed)
    z = torch.randn(3, mixed.latent_dim)
    x = torch.cat([torch.randn(3, 3), torch.ones(3, 2)], 1)
    h = vae.decoder_output(z)
    robust, poisson = make_likelihood(mixed).groups
    expected = robust[0].log_prob(h[:, :6], x[:, :3]) + poisson[0](h[:, 6:]).log_prob(x[:, 3:])
    torch.testing.assert_close(decoder_log_prob(vae, z, x), expected)


@pytest.mark.slow
def test_on_real_contaminated_data_the_training_anomalies_stay_improbable(shared_data):
    """ADBench annthyroid (7,200 rows, 6 features, 7.4% anomalies), the benchmark's split for seed 0: the
    training part keeps its anomalies. gaussian-learned explains them with a large variance where they sit
    (ROC-AUC about 0.87); the background of gaussian-robust takes them instead (about 0.94)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    d = np.load(shared_data / "adbench" / "2_annthyroid.npz", allow_pickle=False)
    x, y = d["X"].astype(np.float64), d["y"].astype(int)
    x_train, x_test, _, y_test = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    # one fit each (refits=0): the likelihoods alone; the refits are tests/test_concentration.py's
    robust = aevb.AnomalyDetector(random_state=0, n_samples=20, refits=0).fit(x_train)
    learned = aevb.AnomalyDetector(likelihood="gaussian-learned", random_state=0, n_samples=20, refits=0).fit(x_train)
    assert robust.model_.config.likelihood == "gaussian-robust" and robust.model_.config.outlier_weight == 0.2
    auc_robust = roc_auc_score(y_test, -robust.score_samples(x_test))
    auc_learned = roc_auc_score(y_test, -learned.score_samples(x_test))
    assert auc_robust > 0.91 and auc_robust > auc_learned + 0.03, (auc_robust, auc_learned)


def test_trains_samples_and_evaluates_as_a_library_model():
    """`aevb.train` with likelihood gaussian-robust on a noisy 2-D parabola: the test log p(x) beats the best
    single Gaussian's (a full-covariance fit to the training rows, -2.32 nats) and is not below the ELBO,
    and draws come from the mixture, reproducibly."""
    from torch.distributions import MultivariateNormal

    from aevb.data.dataset import Dataset

    rng = np.random.default_rng(0)
    t = rng.uniform(-1.5, 1.5, size=(900, 1))
    x = torch.tensor(np.hstack([t, t**2 - 0.75]) + 0.05 * rng.standard_normal((900, 2)), dtype=torch.float32)
    splits = {s: x[i::3] for i, s in enumerate(("train", "valid", "test"))}
    train = splits["train"].double()
    gaussian = MultivariateNormal(train.mean(0), torch.cov(train.T)).log_prob(splits["test"].double()).mean()
    config = ModelConfig(data_shape=(2,), likelihood="gaussian-robust", latent_dim=1, hidden=(32,), activation="relu")
    model = aevb.train(
        config, aevb.TrainConfig(epochs=100, lr=3e-3, batch_size=32), dataset=Dataset("curve", (2,), **splits)
    )
    ll = aevb.log_likelihood(model, splits["test"], k=200)
    elbo = aevb.elbo_terms(model, splits["test"], samples=20).elbo
    assert torch.isfinite(ll).all() and ll.mean() > gaussian + 0.2, (ll.mean(), gaussian)
    assert ll.mean() >= elbo.mean() - 0.02
    a = model.sample(4000, torch.Generator().manual_seed(0), mean=False)
    b = model.sample(4000, torch.Generator().manual_seed(0), mean=False)
    assert torch.equal(a, b) and a.shape == (4000, 2)
    # |x| > 4 comes (almost) only from the background: P = w (1 - 2/pi atan 4) = 0.0312 per feature
    assert abs((a.abs() > 4).float().mean().item() - 0.2 * (1 - 2 / math.pi * math.atan(4))) < 0.01
