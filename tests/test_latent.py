"""The latent structure's interface (`aevb.latent`, `VAE.noise_dim/log_prior/kl/sample_prior/log_joint`):
checked against torch.distributions, and every z ~ p(z) of the tools drawn from the run's own prior."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

import aevb
from aevb.latent import DiagonalGaussian, gaussian_kl
from aevb.report import table_statistics


def _posterior(b: int = 5, d: int = 3, seed: int = 0) -> DiagonalGaussian:
    g = torch.Generator().manual_seed(seed)
    return DiagonalGaussian(torch.randn(b, d, generator=g), torch.rand(b, d, generator=g) + 0.2)


def test_diagonal_gaussian_is_the_torch_distribution():
    q = _posterior()
    ref = Independent(Normal(q.base_dist.loc, q.base_dist.scale), 1)
    eps = torch.randn(7, 5, 3, generator=torch.Generator().manual_seed(1))
    z = q.rsample_from(eps)
    torch.testing.assert_close(z, ref.mean + ref.stddev * eps)
    torch.testing.assert_close(q.log_prob(z), ref.log_prob(z))
    torch.testing.assert_close(q.mean, ref.mean)
    assert q.noise_dim == 3
    standard = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    torch.testing.assert_close(q.kl_standard_normal(), kl_divergence(ref, standard))
    torch.testing.assert_close(gaussian_kl(q), q.kl_per_dim(None).sum(-1))


def test_rsample_from_is_differentiable_in_the_posterior_parameters():
    loc, scale = torch.zeros(2, 3, requires_grad=True), torch.ones(2, 3, requires_grad=True)
    eps = torch.full((4, 2, 3), 0.5)
    DiagonalGaussian(loc, scale).rsample_from(eps).sum().backward()
    torch.testing.assert_close(loc.grad, torch.full((2, 3), 4.0))  # dz/dmu = 1, summed over 4 draws
    torch.testing.assert_close(scale.grad, torch.full((2, 3), 2.0))  # dz/dsigma = eps


def _mog_model(shift: float = 6.0) -> aevb.VAE:
    """A Gaussian-decoder VAE with a mixture prior moved far from N(0, I): components at +shift and -shift/2."""
    torch.manual_seed(0)
    model = aevb.VAE(
        aevb.ModelConfig(
            data_shape=(4,),
            latent_dim=2,
            hidden=(16,),
            likelihood="gaussian",
            sigma=0.5,
            prior="mog",
            prior_components=2,
        )
    )
    with torch.no_grad():
        model.prior_net.loc.copy_(torch.tensor([[shift, shift], [-shift / 2, -shift / 2]]))
        model.prior_net.log_scale.fill_(math.log(0.3))
        model.prior_net.logits.copy_(torch.tensor([math.log(3.0), 0.0]))  # weights 3/4, 1/4
    return model.eval()


def test_sample_prior_draws_the_learned_mixture():
    model = _mog_model()
    z = model.sample_prior(40_000, torch.Generator().manual_seed(0))
    # mean 3/4 * 6 + 1/4 * (-3) = 3.75; variance 0.09 + E[m^2] - 3.75^2 = 0.09 + 27.0 + 2.25 - 14.0625
    torch.testing.assert_close(z.mean(0), torch.full((2,), 3.75), atol=0.05, rtol=0)
    torch.testing.assert_close(z.var(0), torch.full((2,), 0.09 + 29.25 - 3.75**2), atol=0.25, rtol=0)
    same = model.sample_prior(40_000, torch.Generator().manual_seed(0))
    assert torch.equal(z, same)  # reproducible through the generator
    normal = aevb.VAE(aevb.ModelConfig(data_shape=(4,), latent_dim=2))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(normal.sample_prior(9, g1), torch.randn(9, 2, generator=g2))  # N(0, I): torch.randn's numbers


def test_log_prior_kl_and_log_joint_against_torch():
    model = _mog_model()
    z = torch.randn(6, 2)
    torch.testing.assert_close(model.log_prior(z), model.prior().log_prob(z))
    assert model.kl(_posterior(d=2)) is None  # a mixture prior has no closed-form KL
    x = torch.randn(6, 4)
    with torch.no_grad():
        want = Independent(Normal(model.decode(z).mean, 0.5), 1).log_prob(x) + model.prior().log_prob(z)
        torch.testing.assert_close(model.log_joint(x, z), want)
    normal = aevb.VAE(aevb.ModelConfig(data_shape=(4,), latent_dim=2))
    q = _posterior(b=6, d=2)
    torch.testing.assert_close(normal.kl(q), kl_divergence(q, normal.prior().expand((6,))))


def test_report_table_samples_come_from_the_runs_prior():
    """Per-feature sample statistics of a mog run are those of x ~ p(x|z), z ~ the mixture (they were
    drawn from N(0, I) before)."""
    model = _mog_model()
    x = torch.randn(50, 4)
    st = table_statistics(model, x, n_samples=4000, seed=0)
    with torch.no_grad():
        f = model.decode(model.sample_prior(200_000, torch.Generator().manual_seed(1))).mean  # E[x|z]
        off = model.decode(torch.randn(200_000, 2, generator=torch.Generator().manual_seed(1))).mean
    se = np.sqrt((f.var(0) + 0.25).numpy() / 4000)
    assert np.all(np.abs(st["sample_mean"] - f.mean(0).numpy()) < 4 * se)
    assert np.any((f.mean(0) - off.mean(0)).abs().numpy() > 20 * se)  # the check can tell the two priors apart


def test_explorer_samples_come_from_the_runs_prior(tmp_path):
    """`aevb serve`'s sample button draws z from a mog run's mixture, not from N(0, I)."""
    from aevb.serve import Explorer

    run = tmp_path / "mog"
    model_cfg = aevb.ModelConfig(latent_dim=2, hidden=(16,), prior="mog", prior_components=2)
    aevb.train(model_cfg, aevb.TrainConfig(dataset="digits", epochs=1), run)
    model = aevb.load(run)
    with torch.no_grad():  # move the run's prior far from N(0, I) and save it back
        model.prior_net.loc.copy_(torch.tensor([[6.0, 6.0], [-3.0, -3.0]]))
        model.prior_net.log_scale.fill_(math.log(0.3))
        model.prior_net.logits.copy_(torch.tensor([math.log(3.0), 0.0]))
    from aevb.checkpoint import save_model

    save_model(run, model)
    explorer = Explorer(run, k=5)
    got = explorer.sample({"n": 64, "seed": 3})
    z = torch.tensor(got["z"])
    want = model.sample_prior(64, torch.Generator().manual_seed(3))
    torch.testing.assert_close(z, want)
    assert z.mean().item() > 2.0  # under N(0, I) the mean of 128 numbers is within +-0.5


@pytest.mark.parametrize("prior", ["normal", "mog", "vamp"])
def test_log_weights_see_only_the_interface(prior):
    """log w = log p(x|z) + log p(z) - log q(z|x) with z = q.rsample_from(eps), for every prior."""
    torch.manual_seed(0)
    model = aevb.VAE(
        aevb.ModelConfig(
            data_shape=(4,), latent_dim=2, hidden=(8,), likelihood="gaussian", prior=prior, prior_components=3
        )
    ).eval()
    x, eps = torch.rand(5, 4), torch.randn(7, 5, 2)
    with torch.no_grad():
        lw = aevb.log_weights(model, x, eps=eps)
        q = model.encode(x)
        z = q.base_dist.loc + q.base_dist.scale * eps
        want = model.decode(z).log_prob(x) + model.prior().log_prob(z) - q.log_prob(z)
    torch.testing.assert_close(lw, want)
