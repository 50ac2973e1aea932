"""The KL term of a stack's ELBO (estimator B): each layer's term in closed form where it has one given the draws it
is conditioned on (bottom-up: the top layer; ladder: every layer), Monte Carlo elsewhere and under a flow
(aevb.hierarchy_posteriors, `rsample_with_kl`; `VAE.kl_along`). Checked against torch.distributions'
kl_divergence at a fixed parent draw, against the all-Monte-Carlo ELBO's mean, and for the importance-sampled
log p(x), which must keep the exact log q and log p of every draw."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from aevb.evaluate import NOISE_CHUNK, example_noise, log_likelihood
from aevb.hierarchy import BottomUp, Ladder
from aevb.hierarchy_layers import split_gaussian
from aevb.objectives import decoder_log_prob, elbo
from linear_gaussian import INFERENCE, random_stack


def _x(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _layer_log_q(q, eps: torch.Tensor) -> list[torch.Tensor]:
    """log q(z_l | its parents) of each layer along the draw from eps, bottom first, each (..., B) nats."""
    e, parts = q.h.split(eps), {}

    def pick(i, layer):
        z, lq = layer.rsample_with_log_prob(e[i])
        parts[i] = lq
        return z, lq

    q._walk(pick)
    return [parts[i] for i in range(len(e))]


@pytest.mark.parametrize("inference", INFERENCE)
def test_each_closed_form_term_is_the_gaussian_kl_at_its_parents_draw(inference):
    """At a fixed draw of a layer's parents, its term is kl_divergence(q's Normal, p's Normal) whatever the
    layer's own noise, and the Monte Carlo mean of log q - log p over 4000 draws of the layer is within 4
    standard errors of it. Bottom-up: the top layer against N(0, I); ladder: every layer."""
    model = random_stack(inference)
    h, x = model.hierarchy, _x()
    q = model.encode(x)
    n, g = 4000, torch.Generator().manual_seed(2)
    base = torch.randn(1, x.shape[0], model.noise_dim, generator=g, dtype=torch.float64).expand(n, -1, -1)
    starts = [0, *torch.tensor(h.sizes).cumsum(0).tolist()]
    top = len(h.sizes) - 1
    with torch.no_grad():
        for i in [top] if inference == "bottom-up" else range(top + 1):
            eps = base.clone()  # the parents' noise fixed (bottom-up: the layers below, ladder: those above)
            own = slice(starts[i], starts[i + 1]) if inference == "bottom-up" else slice(0, starts[i + 1])
            eps[..., own] = torch.randn(n, x.shape[0], own.stop - own.start, generator=g, dtype=torch.float64)
            z, kl = q.rsample_with_kl(eps)  # (n, B, sum d), (n, B, L)
            assert kl.shape == (n, x.shape[0], top + 1)
            zs = h.split(z)
            if inference == "bottom-up":  # q(z_L | z_{L-1}) from the `up` net of the fixed draw z_{L-1}
                mu, logvar = split_gaussian(h.up[i - 1](zs[i - 1][0]))
            else:  # the precision-weighted q(z_l | z_{l+1}, x) at the fixed draw above
                mu, logvar = q._layer(i, None if i == top else zs[i + 1][0])
            q_l = Normal(mu, torch.exp(0.5 * logvar))
            if i == top:
                p_l = Normal(torch.zeros_like(mu), torch.ones_like(mu))
            else:
                mu_p, logvar_p = h.conditional(i, zs[i + 1][0])
                p_l = Normal(mu_p, torch.exp(0.5 * logvar_p))
            want = kl_divergence(q_l, p_l).sum(-1)  # (B,)
            torch.testing.assert_close(kl[..., i], want.expand(n, -1), atol=1e-12, rtol=1e-12)
            mc = q_l.log_prob(zs[i]).sum(-1) - p_l.log_prob(zs[i]).sum(-1)  # (n, B)
            se = mc.std(0) / math.sqrt(n)
            assert ((mc.mean(0) - want).abs() < 4 * se).all(), (i, (mc.mean(0) - want) / se)


def test_bottom_up_lower_layers_stay_monte_carlo():
    """q(z_l | z_{l-1}) and p(z_l | z_{l+1}) condition on different layers: below the top, each term is
    log q - log p of the draw itself."""
    model = random_stack("bottom-up")
    q, h = model.encode(_x()), model.hierarchy
    eps = torch.randn(3, 4, model.noise_dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    z, kl = q.rsample_with_kl(eps)
    zs, log_q = h.split(z), _layer_log_q(q, eps)
    for i in range(len(h.sizes) - 1):
        torch.testing.assert_close(kl[..., i], log_q[i] - h.log_conditional(i, zs), atol=1e-12, rtol=0)
    torch.testing.assert_close(z, q.rsample_from(eps))  # the same draws as the posterior's own


@pytest.mark.parametrize("inference", INFERENCE)
def test_a_layer_under_a_flow_stays_monte_carlo(inference):
    """With --flow iaf no layer's q is Gaussian: every term is the exact log q - log p along the draw, and their
    sum is what estimator A scores, log q(z|x) - log p(z)."""
    model = random_stack(inference, flow="iaf")
    q, h = model.encode(_x()), model.hierarchy
    eps = torch.randn(3, 4, model.noise_dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    z, kl = q.rsample_with_kl(eps)
    zs, log_q = h.split(z), _layer_log_q(q, eps)
    for i in range(len(h.sizes)):
        torch.testing.assert_close(kl[..., i], log_q[i] - h.log_conditional(i, zs), atol=1e-12, rtol=0)
    z_a, lq = q.rsample_with_log_prob(eps)
    torch.testing.assert_close(z, z_a, atol=0, rtol=0)
    torch.testing.assert_close(model.kl_along(q, eps)[1], lq - model.log_prior(z), atol=1e-12, rtol=0)


# pooled Var(ELBO with the closed forms) / Var(all-Monte-Carlo ELBO) over draws at initialisation, this seed:
# measured 0.71 (bottom-up) and 0.24 (ladder), the gradients' total variance 0.75 and 0.45 (model seeds 0-3:
# 0.69-0.85 and 0.19-0.37; gradients 0.75-0.83 and 0.28-0.46)
VARIANCE_RATIO = {"bottom-up": 0.85, "ladder": 0.4}
GRADIENT_VARIANCE_RATIO = {"bottom-up": 0.9, "ladder": 0.6}


@pytest.mark.parametrize("inference", INFERENCE)
def test_the_elbo_keeps_its_mean_with_a_lower_variance(inference):
    """Over 500 draws for each of 20 points, the same noise for both: the mean difference of the new ELBO and
    estimator A's is within 4 standard errors, the variance is lower (VARIANCE_RATIO), and so is the variance
    of the gradient of the batch's mean ELBO over 300 draws. (Near the true posterior, where every draw of
    estimator A gives log p(x), the closed forms add variance instead: tests/test_hierarchy.py.)"""
    model = random_stack(inference, latents=(3, 2))
    x = _x(20)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        eps = torch.randn(1, 500 * 20, model.noise_dim, generator=g, dtype=torch.float64)
        new = elbo(model, x.repeat(500, 1), eps=eps).elbo.view(500, 20)
        old = elbo(model, x.repeat(500, 1), eps=eps, estimator="mc").elbo.view(500, 20)
    d = new - old
    assert ((d.mean(0)).abs() < 4 * d.std(0) / math.sqrt(500)).all(), d.mean(0) / (d.std(0) / math.sqrt(500))
    ratio = (new.var(0).mean() / old.var(0).mean()).item()
    assert ratio < VARIANCE_RATIO[inference], ratio
    params = list(model.parameters())
    grads = {}
    for estimator in ("analytic", "mc"):
        gen, rows = torch.Generator().manual_seed(6), []
        for _ in range(300):
            eps = torch.randn(1, 20, model.noise_dim, generator=gen, dtype=torch.float64)
            value = elbo(model, x, eps=eps, estimator=estimator).elbo.mean()
            rows.append(torch.cat([gr.flatten() for gr in torch.autograd.grad(value, params)]))
        grads[estimator] = torch.stack(rows)
    ratio = (grads["analytic"].var(0).sum() / grads["mc"].var(0).sum()).item()
    assert ratio < GRADIENT_VARIANCE_RATIO[inference], ratio


@pytest.mark.parametrize("inference", INFERENCE)
@pytest.mark.parametrize("flow", ["none", "iaf"])
def test_importance_sampled_log_px_never_asks_for_the_closed_forms(monkeypatch, inference, flow):
    """`aevb eval`'s log p(x) (k = 1000, two noise chunks) is the logsumexp of log p(x|z) + log p(z) - log q(z|x)
    of each draw, the exact densities, bit for bit, with the per-layer KL made to fail if anything asked for it."""
    model = random_stack(inference, flow=flow)
    x, k, seed = _x(3), 1000, 7

    def refuse(self, eps):
        raise AssertionError("the importance-sampled log p(x) asked for the closed-form KL")

    for cls in (BottomUp, Ladder):
        monkeypatch.setattr(cls, "rsample_with_kl", refuse)
    est = log_likelihood(model, x, k=k, batch_size=3, seed=seed)
    with torch.no_grad():
        q, acc = model.encode(x), torch.full((3,), -math.inf, dtype=torch.float64)
        for c, start in enumerate(range(0, k, NOISE_CHUNK)):
            n = min(NOISE_CHUNK, k - start)
            eps = torch.stack([example_noise(seed, j, c, (n, model.noise_dim)) for j in range(3)], 1).double()
            z, lq = q.rsample_with_log_prob(eps)
            lw = decoder_log_prob(model, z, x) + model.log_prior(z) - lq
            acc = torch.logaddexp(acc, torch.logsumexp(lw, 0))
    assert torch.equal(est, acc - math.log(k))
