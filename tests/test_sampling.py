"""`aevb.sampling`: the aggregate-posterior mixture recovers a known mixture and round trips; interpolation
and traversals decode the right codes."""

import pytest
import torch

import aevb
from aevb import VAE, ModelConfig
from aevb.preprocess import split
from aevb.sampling import GaussianMixture, fit_aggregate, interpolate, posterior_means, traverse


@pytest.fixture(scope="module")
def trained(digits_elbo_and_iwae_models) -> dict:
    """The session's ELBO- and IWAE-trained digits models (conftest.py)."""
    return digits_elbo_and_iwae_models


def _x(digits, name="test"):
    return split(digits, name, "dynamic")


# -- samples: aggregate posterior, interpolation, traversals -----------------------------------------


def test_aggregate_mixture_recovers_a_known_mixture_and_round_trips(tmp_path):
    g = torch.Generator().manual_seed(0)
    true = GaussianMixture(
        torch.tensor([0.3, 0.7], dtype=torch.float64),
        torch.tensor([[-3.0, 0.0], [2.0, 1.0]], dtype=torch.float64),
        torch.tensor([[[0.5, 0.2], [0.2, 0.4]], [[0.3, 0.0], [0.0, 1.0]]], dtype=torch.float64),
    )
    z = true.sample(20000, g)
    ident = VAE(ModelConfig(data_shape=(2,), latent_dim=2, hidden=(), likelihood="gaussian"))
    with torch.no_grad():  # posterior mean = x, so the fit sees z itself
        ident.encoder.net[0].weight.copy_(torch.cat([torch.eye(2), torch.zeros(2, 2)]))
        ident.encoder.net[0].bias.zero_()
    fit = fit_aggregate(ident, z, components=2)
    order = fit.means[:, 0].argsort()
    torch.testing.assert_close(fit.weights[order], true.weights, atol=0.02, rtol=0)
    torch.testing.assert_close(fit.means[order], true.means, atol=0.05, rtol=0)
    torch.testing.assert_close(fit.covariances[order], true.covariances, atol=0.05, rtol=0)
    # its draws have the fitted moments; the density is the mixture's
    s = fit.sample(40000, torch.Generator().manual_seed(1)).double()
    torch.testing.assert_close(s.mean(0), (fit.weights[:, None] * fit.means).sum(0), atol=0.04, rtol=0)
    fit.save(tmp_path / "a.safetensors")
    back = GaussianMixture.load(tmp_path / "a.safetensors")
    assert all(torch.equal(getattr(back, f), getattr(fit, f)) for f in ("weights", "means", "covariances"))
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(aevb.CheckpointError):
        GaussianMixture.load(tmp_path / "bad.safetensors")


@pytest.mark.slow
def test_interpolation_and_traversals_decode_the_right_codes(trained, digits):
    model, x = trained["elbo"], _x(digits)
    z, xs = interpolate(model, x[0], x[1], steps=5)
    mu = posterior_means(model, x[:2])
    torch.testing.assert_close(z[0], mu[0])
    torch.testing.assert_close(z[-1], mu[1])
    torch.testing.assert_close(z[2], (mu[0] + mu[1]) / 2)
    with torch.no_grad():
        torch.testing.assert_close(xs, model.decode(z).mean.reshape(5, 8, 8))
    values = torch.linspace(-2, 2, 3)
    z, xs = traverse(model, mu[0], [1, 6], values)
    assert z.shape == (2, 3, 8) and xs.shape == (2, 3, 8, 8)
    expected = mu[0].clone()
    expected[6] = 2.0
    torch.testing.assert_close(z[1, 2], expected)
    with torch.no_grad():
        torch.testing.assert_close(xs[1, 2], model.decode(expected).mean.reshape(8, 8))
