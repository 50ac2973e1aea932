"""The encoder's gradient estimators (aevb.gradients) on a linear-Gaussian model, against ground truth:
DReG has the standard IWAE gradient's mean and a lower variance; STL is unbiased for the ELBO (k = 1),
biased for k > 1, and exactly zero per draw at the true posterior; the decoder's gradient and the
value are those of the standard bound, bit for bit, for the same noise."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

import aevb
from aevb.config import TrainConfig
from aevb.errors import AevbError
from aevb.latent import DiagonalGaussian
from aevb.objectives import OBJECTIVES, elbo, iwae, log_weights
from compiled_dreg import assert_dreg_compiled_equals_eager

D, DZ, SIGMA = 6, 2, 0.7


def linear_gaussian(exact_posterior: bool, seed: int = 0):
    """z ~ N(0, I), x|z ~ N(Wz + b, sigma^2 I) as a VAE with linear networks (hidden = ()) and the fixed
    `gaussian` likelihood; W has orthogonal columns, so the true posterior N(A(x - b), M^-1),
    M = I + W^T W / sigma^2, is diagonal and the encoder holds it exactly (or, with exact_posterior
    False, a shifted, wider q). Returns the model (float64) and 4 points x drawn from p(x)."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(D, DZ, generator=g, dtype=torch.float64))
    W = Q * torch.tensor([1.5, 0.8], dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64) * 0.3
    model = aevb.VAE(aevb.ModelConfig(data_shape=(D,), latent_dim=DZ, hidden=(), likelihood="gaussian", sigma=SIGMA))
    model = model.double()
    Minv = torch.linalg.inv(torch.eye(DZ, dtype=torch.float64) + W.T @ W / SIGMA**2)
    A, logvar = Minv @ W.T / SIGMA**2, torch.log(torch.diagonal(Minv))
    if not exact_posterior:
        A, logvar = A * 0.8, logvar + 0.5
    with torch.no_grad():
        enc, dec = model.encoder.net[0], model.decoder.net[0]
        enc.weight.copy_(torch.cat([A, torch.zeros(DZ, D, dtype=torch.float64)]))
        enc.bias.copy_(torch.cat([-A @ b, logvar]))
        dec.weight.copy_(W)
        dec.bias.copy_(b)
    marginal = MultivariateNormal(b, W @ W.T + SIGMA**2 * torch.eye(D, dtype=torch.float64))
    return model, marginal.sample((4,))


def encoder_gradients(model, x0, k, repeats, gradient, objective="iwae", seed=0):
    """The gradient of the per-example objective at x0 with respect to the encoder's output (mu, log sigma^2),
    (repeats, 2 DZ): one independent draw of the k noises per row. The encoder's parameter gradient is
    this times the fixed input [x0, 1], so its mean and variance follow from these."""
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(k, repeats, DZ, generator=g, dtype=torch.float64)
    x = x0.expand(repeats, D)
    seen = {}

    def keep(module, inputs, out):
        out.retain_grad()
        seen["out"] = out

    handle = model.encoder.register_forward_hook(keep)
    try:
        if objective == "iwae":
            value = iwae(model, x, k, eps=eps, gradient=gradient)
        else:
            value = elbo(model, x, samples=k, estimator="mc", eps=eps, gradient=gradient).elbo
        model.zero_grad()
        value.sum().backward()  # rows are independent: row r's gradient is its own draw's
    finally:
        handle.remove()
    return seen["out"].grad


def paired_z(a, b):
    """|mean(a - b)| over its standard error, per component: the same noise, so the pairs' differences."""
    d = a - b
    return (d.mean(0).abs() / (d.std(0) / math.sqrt(d.shape[0]))).max().item()


@pytest.mark.parametrize("k", [5, 20])
def test_dreg_has_the_standard_mean_and_a_lower_variance(k):
    model, x = linear_gaussian(exact_posterior=False)
    standard = encoder_gradients(model, x[0], k, 20000, "standard")
    dreg = encoder_gradients(model, x[0], k, 20000, "dreg")
    assert paired_z(dreg, standard) < 4.0  # unbiased: the same expectation within standard errors
    assert dreg.var(0).sum() < 0.1 * standard.var(0).sum()
    # the agreement means something: q is not the posterior, and the repeats resolve the mean gradient
    assert (standard.mean(0).abs() / (standard.std(0) / math.sqrt(20000))).max() > 5.0


def test_stl_is_biased_for_k_above_one_and_the_test_can_see_it():
    # Tucker et al. (2019), Section 4: the score term STL drops has mean zero only at k = 1
    model, x = linear_gaussian(exact_posterior=False)
    standard = encoder_gradients(model, x[0], 20, 20000, "standard")
    stl = encoder_gradients(model, x[0], 20, 20000, "stl")
    assert paired_z(stl, standard) > 8.0
    assert stl.var(0).sum() < standard.var(0).sum()


def test_stl_is_unbiased_for_the_elbo():
    model, x = linear_gaussian(exact_posterior=False)
    for objective in ("elbo", "iwae"):  # k = 1: the ELBO with a Monte Carlo KL, and L_1
        standard = encoder_gradients(model, x[1], 1, 20000, "standard", objective)
        stl = encoder_gradients(model, x[1], 1, 20000, "stl", objective)
        assert paired_z(stl, standard) < 4.0
        assert stl.var(0).sum() < standard.var(0).sum()


@pytest.mark.parametrize("gradient", ["stl", "dreg"])
def test_the_gradient_is_zero_per_draw_at_the_true_posterior(gradient):
    # every log-weight is log p(x) whatever z: STL and DReG "stick the landing"; the standard estimator
    # keeps its score term, zero only in expectation
    model, x = linear_gaussian(exact_posterior=True)
    got = encoder_gradients(model, x[2], 5, 200, gradient)
    assert got.abs().max() < 1e-10
    assert encoder_gradients(model, x[2], 5, 200, "standard").abs().max() > 0.1


@pytest.mark.parametrize("gradient", ["stl", "dreg"])
def test_value_and_decoder_gradient_equal_the_standard_bound_bit_for_bit(gradient):
    model, x = linear_gaussian(exact_posterior=False)
    eps = torch.randn(7, x.shape[0], DZ, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grads, values = {}, {}
    for g in ("standard", gradient):
        model.zero_grad()
        values[g] = iwae(model, x, 7, eps=eps, gradient=g)
        values[g].mean().backward()
        grads[g] = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert torch.equal(values[gradient], values["standard"])
    reference = torch.logsumexp(log_weights(model, x, eps=eps), 0) - math.log(7)
    assert torch.equal(values[gradient], reference.detach())
    for name in ("decoder.net.0.weight", "decoder.net.0.bias"):
        assert torch.equal(grads[gradient][name], grads["standard"][name]), name
    assert not torch.allclose(grads[gradient]["encoder.net.0.weight"], grads["standard"]["encoder.net.0.weight"])


def test_dreg_weights_the_path_by_the_squared_normalised_weights():
    # Tucker et al. (2019), eq. 8, written out with autograd: sum_i w~_i^2 d log w_i / dphi along z alone
    model, x = linear_gaussian(exact_posterior=False)
    eps = torch.randn(6, x.shape[0], DZ, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    enc = model.encoder.net[0]
    model.zero_grad()
    iwae(model, x, 6, eps=eps, gradient="dreg").sum().backward()
    got = enc.weight.grad.clone()
    q = model.encode(x)
    z = q.rsample_from(eps)
    log_w = model.log_joint(x, z) - q.detached().log_prob(z)  # (k, B)
    w = torch.softmax(log_w.detach(), 0)
    (expected,) = torch.autograd.grad((w.square() * log_w).sum(), enc.weight)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_the_registered_objective_follows_the_config():
    model, x = linear_gaussian(exact_posterior=False)
    eps = torch.randn(5, x.shape[0], DZ, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for gradient in ("standard", "stl", "dreg"):
        cfg = TrainConfig(objective="iwae", k=5, gradient=gradient)
        model.zero_grad()
        OBJECTIVES["iwae"](model, x, cfg, eps).sum().backward()
        via_config = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        iwae(model, x, 5, eps=eps, gradient=gradient).sum().backward()
        assert all(torch.equal(a, p.grad) for a, p in zip(via_config, model.parameters())), gradient


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(objective="elbo", gradient="dreg"), "--gradient dreg is for --objective iwae"),
        (dict(objective="elbo", gradient="stl"), "needs --estimator mc"),
        (dict(objective="elbo", estimator="mc", gradient="stl", beta=2.0), "no beta"),
        (dict(gradient="natural"), "gradient must be one of standard, dreg, stl"),
    ],
)
def test_bad_combinations_are_config_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields)


def test_a_posterior_without_detached_is_a_one_line_error(monkeypatch, digits):
    monkeypatch.delattr(DiagonalGaussian, "detached")
    cfg = TrainConfig(objective="iwae", k=2, gradient="dreg", epochs=1)
    with pytest.raises(AevbError, match=r"need a posterior .*q\.detached\(\).*DiagonalGaussian has none") as e:
        aevb.train(aevb.ModelConfig(hidden=(8,)), cfg, dataset=digits)
    assert "\n" not in str(e.value)


def test_training_with_dreg_and_stl_improves_the_bound(digits):
    x = torch.as_tensor(digits.train[:300]).reshape(300, -1)
    for fields in (dict(objective="iwae", k=5, gradient="dreg"), dict(estimator="mc", gradient="stl")):
        cfg = TrainConfig(epochs=3, batch_size=50, seed=1, **fields)
        model = aevb.train(aevb.ModelConfig(hidden=(16,)), cfg, dataset=digits)
        before = aevb.VAE(aevb.ModelConfig(data_shape=model.config.data_shape, hidden=(16,)))
        g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
        with torch.no_grad():
            trained = iwae(model, (x > 0.5).float(), 5, generator=g()).mean()
            initial = iwae(before, (x > 0.5).float(), 5, generator=g()).mean()
        assert trained > initial + 5.0, fields


@pytest.mark.slow
def test_dreg_under_torch_compile_equals_eager():
    # the weighting is a hook on z's gradient: torch.compile must keep it (about a minute to compile)
    torch.manual_seed(0)
    model = aevb.VAE(aevb.ModelConfig(data_shape=(12,), latent_dim=3, hidden=(16,)))
    x = torch.rand(8, 12, generator=torch.Generator().manual_seed(1)).bernoulli()
    eps = torch.randn(5, 8, 3, generator=torch.Generator().manual_seed(2))
    assert_dreg_compiled_equals_eager(model, x, eps)
