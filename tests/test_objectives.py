"""The math against ground truth: closed forms and torch.distributions."""

import math

import pytest
import torch
from torch.distributions import (
    Bernoulli,
    Independent,
    MultivariateNormal,
    Normal,
    kl_divergence,
)

from aevb import (
    VAE,
    ModelConfig,
    elbo,
    elbo_terms,
    gaussian_kl,
    iwae,
    log_likelihood,
    log_weights,
)
from aevb.evaluate import bits_per_dim, summarize

D, DZ, SIGMA = 6, 2, 0.7


def linear_gaussian(exact_posterior: bool, seed: int = 0):
    """p(z) = N(0, I), p(x|z) = N(Wz + b, sigma^2 I): log p(x) = log N(x; b, W W^T + sigma^2 I).

    W has orthogonal columns, so the true posterior N(A(x - b), M^-1), M = I + W^T W / sigma^2,
    is diagonal and the encoder can represent it exactly.
    """
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(D, DZ, generator=g, dtype=torch.float64))
    W = Q * torch.tensor([1.5, 0.8], dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64) * 0.3
    model = VAE(ModelConfig(data_shape=(D,), latent_dim=DZ, hidden=(), likelihood="gaussian", sigma=SIGMA)).double()
    M = torch.eye(DZ, dtype=torch.float64) + W.T @ W / SIGMA**2
    Minv = torch.linalg.inv(M)
    A = Minv @ W.T / SIGMA**2
    logvar = torch.log(torch.diagonal(Minv))
    if not exact_posterior:  # a deliberately wrong q: shifted mean, inflated variance
        A, logvar = A * 0.8, logvar + 0.5
    with torch.no_grad():
        enc, dec = model.encoder.net[0], model.decoder.net[0]
        enc.weight.copy_(torch.cat([A, torch.zeros(DZ, D, dtype=torch.float64)]))
        enc.bias.copy_(torch.cat([-A @ b, logvar]))
        dec.weight.copy_(W)
        dec.bias.copy_(b)
    marginal = MultivariateNormal(b, W @ W.T + SIGMA**2 * torch.eye(D, dtype=torch.float64))
    x = b + torch.randn(64, D, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(marginal.covariance_matrix).T
    return model, x, marginal.log_prob(x)


def test_analytic_kl_equals_torch():
    g = torch.Generator().manual_seed(1)
    q = Independent(Normal(torch.randn(5, 4, generator=g), torch.rand(5, 4, generator=g) + 0.1), 1)
    p = Independent(Normal(torch.zeros(4), torch.ones(4)), 1)
    torch.testing.assert_close(gaussian_kl(q), kl_divergence(q, p))


def test_likelihoods_match_torch_distributions():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(7, 3, generator=g)
    x01 = torch.rand(7, 10, generator=g).round()
    xr = torch.randn(7, 10, generator=g)
    for name, x in (("bernoulli", x01), ("gaussian", xr), ("gaussian-learned", xr)):
        m = VAE(ModelConfig(data_shape=(10,), latent_dim=3, hidden=(8,), likelihood=name, sigma=0.5))
        h = m.decoder(z)
        if name == "bernoulli":
            ref = Bernoulli(probs=torch.sigmoid(h)).log_prob(x).sum(-1)
        elif name == "gaussian":
            ref = Normal(h, 0.5).log_prob(x).sum(-1)
        else:
            mu, lv = h.chunk(2, -1)
            ref = Normal(mu, torch.exp(0.5 * lv.clamp(-9, 6))).log_prob(x).sum(-1)
        torch.testing.assert_close(m.decode(z).log_prob(x), ref, rtol=1e-5, atol=1e-5)


def test_learned_variance_is_clamped():
    m = VAE(
        ModelConfig(
            data_shape=(4,), latent_dim=2, hidden=(), likelihood="gaussian-learned", logvar_min=-3.0, logvar_max=2.0
        )
    )
    with torch.no_grad():
        m.decoder.net[0].bias[4:] = torch.tensor([-50.0, 50.0, 0.0, 1.0])
        m.decoder.net[0].weight.zero_()
    std = m.decode(torch.zeros(1, 2)).base_dist.scale[0]
    torch.testing.assert_close(std, torch.exp(0.5 * torch.tensor([-3.0, 2.0, 0.0, 1.0])))


def test_elbo_is_exact_with_the_true_posterior():
    model, x, log_px = linear_gaussian(exact_posterior=True)
    # estimator A: log p(x, z) - log q(z|x) = log p(x) for every z, so even one draw is exact
    a = elbo(model, x, samples=1, estimator="mc")
    torch.testing.assert_close(a.elbo, log_px, rtol=0, atol=1e-9)
    # estimator B: the gap KL(q || p(z|x)) is 0, exact in expectation (log p(x|z) is still random)
    b = elbo(model, x, samples=20000, estimator="analytic", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(b.elbo, log_px, rtol=0, atol=0.02)
    torch.testing.assert_close(b.log_px_z - b.kl, b.elbo)
    torch.testing.assert_close(iwae(model, x, 10), log_px, rtol=0, atol=1e-9)


def test_bounds_are_ordered_and_converge_to_log_px():
    model, x, log_px = linear_gaussian(exact_posterior=False)
    g = torch.Generator().manual_seed(3)
    reps = 400

    def mean_se(draws):  # per-example mean and standard error over repeated estimates
        d = torch.stack(draws)
        return d.mean(0), d.std(0) / reps**0.5

    e, se_e = mean_se([elbo(model, x, generator=g).elbo for _ in range(reps)])
    i5, se_5 = mean_se([iwae(model, x, 5, g) for _ in range(reps)])
    i50, se_50 = mean_se([iwae(model, x, 50, g) for _ in range(reps)])
    # per example: E[ELBO] <= E[L_5] <= E[L_50] <= log p(x), up to 4 standard errors
    assert (e <= i5 + 4 * (se_e**2 + se_5**2).sqrt()).all()
    assert (i5 <= i50 + 4 * (se_5**2 + se_50**2).sqrt()).all()
    assert (i50 <= log_px + 4 * se_50).all()
    # on average over the examples the ordering is strict and far outside the noise
    assert (i5 - e).mean() > 0.1 and (i50 - i5).mean() > 0.02
    gap_elbo, gap_50 = (log_px - e).mean().item(), (log_px - i50).mean().item()
    assert gap_elbo > 0.1 and gap_50 < gap_elbo / 5  # the wrong q costs nats; IWAE recovers most
    # the importance-sampled estimate converges: error shrinks like 1/sqrt(k)
    err = {k: (log_likelihood(model, x, k=k, seed=0) - log_px).abs() for k in (10, 100, 5000)}
    assert err[10].mean() > 2 * err[100].mean() > 4 * err[5000].mean()
    assert err[5000].mean() < 0.01 and err[5000].max() < 0.05


def test_estimators_a_and_b_agree_in_expectation():
    model, x, _ = linear_gaussian(exact_posterior=False)
    g = torch.Generator().manual_seed(4)
    a = elbo(model, x, samples=20000, estimator="mc", generator=g)
    b = elbo(model, x, samples=1, estimator="analytic", generator=g)
    torch.testing.assert_close(a.kl, b.kl, rtol=0, atol=0.03)
    assert (a.kl - b.kl).abs().mean() < 0.01


def test_log_weights_shape_and_iwae_k1_is_elbo_estimator_a():
    model, x, _ = linear_gaussian(exact_posterior=False)
    lw = log_weights(model, x, 7, torch.Generator().manual_seed(5))
    assert lw.shape == (7, x.shape[0])
    a = elbo(model, x, 1, "mc", torch.Generator().manual_seed(6)).elbo
    i1 = iwae(model, x, 1, torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, i1)


def test_log_likelihood_ignores_batching_and_sharding():
    model, x, _ = linear_gaussian(exact_posterior=False)
    whole = log_likelihood(model, x, k=1200, batch_size=64, seed=9)
    small = log_likelihood(model, x, k=1200, batch_size=5, seed=9)
    shard = log_likelihood(model, x[32:], k=1200, batch_size=7, seed=9, first_index=32)
    torch.testing.assert_close(whole, small, rtol=0, atol=1e-12)
    torch.testing.assert_close(whole[32:], shard, rtol=0, atol=1e-12)
    other = log_likelihood(model, x, k=1200, batch_size=64, seed=10)
    assert not torch.equal(whole, other)


def test_evaluation_restores_mode_and_summaries():
    model, x, _ = linear_gaussian(exact_posterior=True)
    model.train()
    elbo_terms(model, x)
    assert model.training
    v = torch.tensor([1.0, 2.0, 3.0, 4.0])
    mean, se = summarize(v)
    assert mean == 2.5 and se == pytest.approx(v.std().item() / 2)
    torch.testing.assert_close(bits_per_dim(torch.tensor([-math.log(2) * 784]), 784), torch.tensor([1.0]))


def test_sample_shape_and_reparameterised_gradient():
    m = VAE(ModelConfig(data_shape=(8, 8), latent_dim=2, hidden=(16,)))
    s = m.sample(5, torch.Generator().manual_seed(0))
    assert s.shape == (5, 8, 8) and ((s > 0) & (s < 1)).all()
    x = torch.rand(4, 8, 8).round()
    elbo(m, x).elbo.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    assert m.encoder.net[0].weight.grad.abs().sum() > 0  # gradients reach q through z = mu + sigma*eps
