"""The `Likelihood` interface (aevb.likelihoods): every registered head against its own distribution and
torch.distributions, and a new head added as one class plus one registry entry, run through training,
evaluation (library and CLI), sampling and the anomaly detector."""

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch.distributions import Distribution, Independent, Laplace

import aevb
import aevb.cli
from aevb import VAE, ModelConfig, TrainConfig
from aevb.anomaly.columns import check_values, likelihoods, rescaled_mask
from aevb.anomaly.inputs import InputError
from aevb.likelihoods import (
    LIKELIHOODS,
    check_real,
    column_kinds,
    fp32,
    identity,
    make_likelihood,
    parse_columns,
)
from aevb.priors import draw as prior_draw

MIXED = "gaussian-learned:2,categorical3:1,poisson:1,bernoulli:1,student-t:1"  # D = 6
EXTRA = {"categorical": {"categories": 3}, "mixed": {"columns": MIXED}}
# a value outside each head's support, put at (row 2, feature 4); NaN is outside every support
OUTSIDE = {"bernoulli": 1.5, "poisson": 2.5, "categorical": 3.0, "mixed": -0.5}  # mixed: feature 4 is bernoulli


def _config(name: str, **kw) -> ModelConfig:
    return ModelConfig(data_shape=(6,), latent_dim=2, hidden=(8,), likelihood=name, **EXTRA.get(name, {}), **kw)


def _h(head, rows: int, seed: int) -> torch.Tensor:
    return torch.randn(rows, head.outputs(6), generator=torch.Generator().manual_seed(seed))


# --- every registered head ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_every_head_is_its_distribution_and_the_decoder_size(name):
    c = _config(name)
    head = make_likelihood(c)
    torch.manual_seed(0)
    model = VAE(c)
    z = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(1))
    assert model.decoder_output(z).shape == (3, 4, head.outputs(6))
    h = 2 * torch.randn(3, 4, head.outputs(6), generator=torch.Generator().manual_seed(2))
    p = head(h)
    assert isinstance(p, Distribution) and p.batch_shape == (3, 4) and p.event_shape == (6,)
    x = head.sample(h[0], torch.Generator().manual_seed(3))  # (4, 6): valid data by construction
    assert x.shape == (4, 6)
    lp = head.log_prob(h, x)  # x broadcast over the leading sample dimension
    assert lp.shape == (3, 4) and lp.dtype == torch.float32
    torch.testing.assert_close(lp, p.log_prob(x), rtol=1e-6, atol=1e-4)
    lp16 = head.log_prob(h.bfloat16(), x)  # autocast's bf16 decoder output: the density in fp32
    assert lp16.dtype == torch.float32
    torch.testing.assert_close(lp16, head(h.bfloat16().float()).log_prob(x), rtol=1e-6, atol=1e-4)
    assert head.encoder_input(x).shape == x.shape


@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_every_head_checks_its_support_naming_row_and_feature(name):
    head = make_likelihood(_config(name))
    x = head.sample(_h(head, 5, 0), torch.Generator().manual_seed(0))
    assert head.check(x) is None
    for bad_value in (math.nan, OUTSIDE.get(name, math.inf)):
        bad = x.clone()
        bad[2, 4] = bad_value
        problem = head.check(bad)
        assert problem is not None and "(row 2, feature 4)" in problem, problem
        assert "(row 2, feature 14)" in head.check(bad, first_feature=10)  # a group of a wider table


@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_every_head_samples_reproducibly_with_its_mean(name):
    head = make_likelihood(_config(name))
    h = _h(head, 2, 1)
    a, b = (head.sample(h, torch.Generator().manual_seed(4)) for _ in range(2))
    assert torch.equal(a, b) and a.shape == (2, 6)
    n = 20_000
    s = head.sample(h.expand(n, *h.shape), torch.Generator().manual_seed(5)).double()  # (n, 2, 6)
    p = head(h)
    if name == "gaussian-robust":  # the Cauchy(0, 1) background has no mean: P(x < mean), mean the Gaussian's loc
        w, loc = head.outlier_weight, p.mean.double()
        below = (1 - w) / 2 + w * (0.5 + torch.atan(loc) / math.pi)
        se = (below * (1 - below) / n).sqrt()
        assert (((s < loc).double().mean(0) - below).abs() < 5 * se).all()
        return
    se = s.std(0) / math.sqrt(n)
    assert ((s.mean(0) - p.mean.double()).abs() <= 5 * se + 1e-3).all(), (s.mean(0), p.mean)


@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_location_scale_heads_rescale_by_the_change_of_variables(name):
    head = make_likelihood(_config(name))
    h = _h(head, 4, 2).double()
    shift, scale = torch.linspace(-3, 3, 6, dtype=torch.float64), torch.linspace(0.5, 4, 6, dtype=torch.float64)
    if not head.location_scale:
        with pytest.raises(ValueError, match="not a location-scale family"):
            head.rescaled(h, shift, scale)
        with pytest.raises(ValueError, match="standardize is for the likelihoods gaussian, gaussian-learned"):
            _config(name, standardize=True)
        return
    x = head.sample(h, torch.Generator().manual_seed(0)).double()
    q = head.rescaled(h, shift, scale)
    y = shift + scale * x
    torch.testing.assert_close(q.log_prob(y), head(h).log_prob(x) - scale.log().sum(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(q.mean, shift + scale * head(h).mean)
    assert _config(name, standardize=True).standardize


def test_names_come_from_the_registry():
    assert set(column_kinds()) == set(LIKELIHOODS) - {"mixed"}
    assert set(likelihoods()) == set(LIKELIHOODS) - {"categorical"}
    with pytest.raises(ValueError, match="likelihood must be one of bernoulli, gaussian"):
        ModelConfig(likelihood="laplace")
    with pytest.raises(ValueError, match="'mixed:2': the kind must be one of"):
        parse_columns("gaussian:1,mixed:2")


# --- a new likelihood: one class, one registry entry ----------------------------------------------


@dataclass(frozen=True)
class LaplaceLikelihood:
    """p(x|z) = prod_d Laplace(x_d; mu_d, b_d); the decoder outputs [mu, log b] per feature."""

    location_scale = True

    def outputs(self, d: int) -> int:
        return 2 * d

    def _params(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_b = h.chunk(2, dim=-1)
        return mu, torch.exp(log_b.clamp(-7.0, 5.0))

    def __call__(self, h: torch.Tensor) -> Distribution:
        return Independent(Laplace(*self._params(h), validate_args=False), 1)

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mu, b = self._params(fp32(h))
        return (-(x - mu).abs() / b - b.log() - math.log(2)).sum(-1)

    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mu, b = self._params(h)
        u = torch.rand(mu.shape, generator=generator, device=mu.device) - 0.5  # inverse CDF
        return mu - b * u.sign() * torch.log1p(-2 * u.abs())

    encoder_input = staticmethod(identity)
    check = staticmethod(check_real)

    def rescaled(self, h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> Distribution:
        mu, b = self._params(h)
        return Independent(Laplace(shift + scale * mu, scale * b, validate_args=False), 1)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(LIKELIHOODS, "toy", lambda c: LaplaceLikelihood())
    return LaplaceLikelihood()


def test_toy_head_is_the_laplace_distribution(toy):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 5, 8, generator=g)  # (L, B, 2D), D = 4
    x = 3 * torch.randn(5, 4, generator=g)
    mu, b = h[..., :4], torch.exp(h[..., 4:])
    torch.testing.assert_close(toy.log_prob(h, x), Laplace(mu, b).log_prob(x).sum(-1))
    torch.testing.assert_close(toy(h).log_prob(x), Laplace(mu, b).log_prob(x).sum(-1))
    # draws: mean mu and mean absolute deviation b, within 5 standard errors (Var x = 2 b^2, Var |x - mu| = b^2)
    n, h1 = 40_000, h[0, :2]
    s = toy.sample(h1.expand(n, 2, 8), torch.Generator().manual_seed(1))
    se = math.sqrt(2) * b[0, :2] / math.sqrt(n)
    assert ((s.mean(0) - mu[0, :2]).abs() < 5 * se).all()
    assert (((s - mu[0, :2]).abs().mean(0) - b[0, :2]).abs() < 5 * b[0, :2] / math.sqrt(n)).all()
    # the support check rejects NaN and infinities, naming the value
    assert toy.check(x) is None
    for value in (math.nan, -math.inf):
        bad = x.clone()
        bad[3, 1] = value
        assert f"the value {value:g} (row 3, feature 1)" in toy.check(bad)


@pytest.mark.slow
def test_toy_head_trains_evaluates_and_samples(toy, tmp_path):
    run = tmp_path / "run"
    config = ModelConfig(likelihood="toy", latent_dim=4, hidden=(64,), activation="relu")
    before = aevb.train(config, TrainConfig(dataset="digits", epochs=0, seed=0))
    model = aevb.train(config, TrainConfig(dataset="digits", epochs=5, seed=0, lr=3e-3), run)
    assert model.decoder_output(torch.zeros(1, 4)).shape == (1, 2 * 64)
    x = aevb.load_dataset("digits").test.reshape(-1, 64)
    e0, e1 = (aevb.elbo_terms(m, x).elbo.mean().item() for m in (before, model))
    ll = aevb.log_likelihood(model, x, k=10).mean().item()
    assert e1 > e0 + 50 and ll >= e1 - 0.5, (e0, e1, ll)
    # the CLI, in this process, rebuilds the model from the registry and reports the same numbers
    assert aevb.cli.main(["eval", str(run), "--k", "10", "--no-progress"]) in (0, None)
    res = json.loads((run / "eval_test.json").read_text())
    assert res["likelihood"] == "toy" and res["log_likelihood"] == pytest.approx(ll, rel=1e-5)
    assert res["elbo"] == pytest.approx(aevb.elbo_terms(model, x).elbo.mean().item(), rel=1e-5)
    # sample: E[x|z] is the Laplace location at z ~ p(z); a draw is the head's own, from the same generator
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        h = model.decoder_output(prior_draw(model.prior(), 500, g))
    mean = model.sample(500, torch.Generator().manual_seed(7))
    torch.testing.assert_close(mean, h[:, :64].reshape(500, 8, 8))
    drawn = model.sample(500, torch.Generator().manual_seed(7), mean=False)
    torch.testing.assert_close(drawn, toy.sample(h, g).reshape(500, 8, 8))
    # standardised: allowed (location-scale); p(x|z) in the data's units is the rescaled Laplace
    std = VAE(ModelConfig(likelihood="toy", standardize=True, latent_dim=4, hidden=(64,)))
    std.set_standardization(x)
    with torch.no_grad():
        p, hz = std.decode(torch.zeros(1, 4)), std.decoder_output(torch.zeros(1, 4))
    torch.testing.assert_close(p.mean, std.data_shift + std.data_scale * hz[:, :64])


def test_toy_head_in_the_anomaly_detector_and_as_a_column_group(toy):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)

    def line(n):  # three features on a line through the origin, Laplace noise, raw scale about 100
        t = rng.standard_normal((n, 1))
        return 100 + 10 * np.hstack([t, 2 * t, -t]) + rng.laplace(0, 1, (n, 3))

    x_train = line(600)
    anomalies = 100 + 10 * rng.standard_normal((20, 3)) * np.array([1, -2, -1])  # off the line
    x_test = np.vstack([line(200), anomalies])
    det = aevb.AnomalyDetector(likelihood="toy", epochs=20, n_samples=10, refits=0).fit(x_train)
    assert det.model_.config.likelihood == "toy" and rescaled_mask("toy", None, 3).all()
    assert (det.scaler_.scale_ > 5).all()  # location-scale: every column centred and scaled
    scores = det.score_samples(x_test)
    assert np.isfinite(scores).all()
    assert roc_auc_score(np.r_[np.zeros(200), np.ones(20)], -scores) > 0.9
    # a column group of mixed: rescaled like any location-scale group, checked by its own head
    assert parse_columns("toy:2,poisson:1") == [("toy", 2, 0), ("poisson", 1, 0)]
    assert list(rescaled_mask("mixed", "toy:2,poisson:1", 3)) == [True, True, False]
    table = np.array([[0.5, -1.0, 3.0], [0.1, 2.0, 1.5]])
    with pytest.raises(InputError, match=r"X has values in column\(s\) 2..2 that are not counts: .*row 1, feature 2"):
        check_values(table, "mixed", "toy:2,poisson:1")
    check_values(table[:1], "mixed", "toy:2,poisson:1")
