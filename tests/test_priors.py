"""`aevb.priors`: the mixture of Gaussians and the VampPrior are their formulas, enter log w and the KL,
sample with the mixture's moments, and train."""

import math

import pytest
import torch
from torch.distributions import Independent, Normal

import aevb
from aevb import VAE, ModelConfig, TrainConfig, elbo, log_weights

# -- priors -----------------------------------------------------------------------------------------


def test_mixture_priors_are_their_formulas_and_enter_log_weights():
    torch.manual_seed(0)
    z = torch.randn(7, 4, 2)
    for prior in ("mog", "vamp"):
        model = VAE(ModelConfig(data_shape=(6,), latent_dim=2, hidden=(8,), prior=prior, prior_components=3))
        if prior == "mog":
            pn = model.prior_net
            w, comp = pn.logits.log_softmax(0), Independent(Normal(pn.loc, pn.log_scale.exp()), 1)
        else:
            qk = model.encode(model.prior_net.pseudo_inputs)
            w, comp = torch.full((3,), -math.log(3)), Independent(Normal(qk.mean, qk.stddev), 1)
        expected = torch.logsumexp(w + comp.log_prob(z.unsqueeze(-2)), dim=-1)  # (7, 4)
        torch.testing.assert_close(model.prior().log_prob(z), expected)
        # log w = log p(x|z) + log p(z) - log q(z|x), with this prior
        x = torch.rand(4, 6).round()
        eps = torch.randn(5, 4, 2)
        q = model.encode(x)
        zz = q.base_dist.loc + q.base_dist.scale * eps
        lw = model.decode(zz).log_prob(x) + expected_prior(model, zz) - q.log_prob(zz)
        torch.testing.assert_close(log_weights(model, x, eps=eps), lw)
        # no closed form: the ELBO's KL is the Monte Carlo estimate with this prior
        t = elbo(model, x, samples=5, eps=eps)
        torch.testing.assert_close(t.kl, (q.log_prob(zz) - model.prior().log_prob(zz)).mean(0))


def expected_prior(model, z):
    return model.prior().log_prob(z)


def test_mixture_prior_samples_have_the_mixture_moments():
    torch.manual_seed(0)
    model = VAE(ModelConfig(data_shape=(6,), latent_dim=2, hidden=(8,), prior="mog", prior_components=3))
    with torch.no_grad():
        model.prior_net.logits.copy_(torch.tensor([0.0, 1.0, -1.0]))
        model.prior_net.log_scale.fill_(-1.0)
    pn = model.prior_net
    z = aevb.priors.draw(model.prior(), 40000, torch.Generator().manual_seed(0))
    pi = pn.logits.softmax(0).detach()
    mean = (pi[:, None] * pn.loc).sum(0).detach()
    torch.testing.assert_close(z.mean(0), mean, atol=0.03, rtol=0)
    assert model.sample(3).shape == (3, 6)


@pytest.mark.slow
def test_vamp_and_mog_train_and_free_bits_need_the_normal_prior(digits):
    for prior in ("mog", "vamp"):
        rec = []
        cfg = ModelConfig(latent_dim=4, hidden=(32,), prior=prior, prior_components=5)
        aevb.train(cfg, TrainConfig(epochs=4), dataset=digits, on_epoch=rec.append)
        assert rec[-1]["valid_elbo"] > rec[0]["valid_elbo"]
    with pytest.raises(aevb.AevbError, match="free-bits needs --prior normal"):
        aevb.train(ModelConfig(prior="mog"), TrainConfig(epochs=1, free_bits=0.5), dataset=digits)
