"""The poisson and categorical likelihoods (issue 8, item 7) against ground truth: torch.distributions and
the closed forms, training on synthetic Poisson counts with a known generating model, training on the
real counts of the built-in `digits` (0..16 per 4x4 block), bad data, the CLI end to end."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal, Poisson

import aevb
from aevb import VAE, ModelConfig, TrainConfig
from aevb.config import from_dict, to_dict
from aevb.data.dataset import Dataset
from aevb.errors import DataError
from aevb.likelihoods import CategoricalLikelihood, PoissonLikelihood, make_likelihood, parse_columns
from aevb.objectives import decoder_log_prob
from aevb.preprocess import check_data
from aevb_process import aevb_main


def _counts(n: int, seed: int = 0):
    """Counts from a known model: z ~ N(0, I_2), x_d ~ Poisson(exp(w_d . z + 1)), D = 12.
    E[x_d] = exp(1 + |w_d|^2 / 2) in closed form."""
    g = torch.Generator().manual_seed(seed)
    w, b = 0.5 * torch.randn(12, 2, generator=g), torch.ones(12)
    z = torch.randn(n, 2, generator=g)
    return torch.poisson(torch.exp(z @ w.T + b), generator=g), w, b


@pytest.fixture(scope="module")
def counts():
    x, w, b = _counts(3000)
    return Dataset("counts", (12,), x[:2000], x[2000:2500], x[2500:]), w, b


@pytest.fixture(scope="module")
def poisson_models(counts):
    ds = counts[0]
    mc = ModelConfig(latent_dim=2, hidden=(64,), likelihood="poisson", activation="relu")
    before = aevb.train(mc, TrainConfig(epochs=0, seed=0), dataset=ds)
    after = aevb.train(mc, TrainConfig(epochs=30, seed=0, lr=3e-3), dataset=ds)
    return before, after


# -- the heads against torch.distributions and the closed forms --------------------------------


def test_poisson_head_is_softplus_rate_poisson():
    g = torch.Generator().manual_seed(0)
    h = 4 * torch.randn(3, 5, 7, generator=g)  # (L, B, D)
    x = torch.poisson(torch.full((5, 7), 2.5), generator=g)
    head = PoissonLikelihood()
    rate = torch.nn.functional.softplus(h) + 1e-6
    p = head(h)
    assert p.event_shape == (7,) and p.batch_shape == (3, 5)
    want = Poisson(rate).log_prob(x).sum(-1)
    closed = (x * rate.log() - rate - torch.lgamma(x + 1)).sum(-1)
    torch.testing.assert_close(p.log_prob(x), want)
    torch.testing.assert_close(p.log_prob(x), closed)
    torch.testing.assert_close(p.mean, rate)
    # numerically safe: a count under a rate at the floor is finite, and so is its gradient
    h2 = torch.full((1, 7), -200.0, requires_grad=True)
    lp = head(h2).log_prob(torch.full((1, 7), 3.0))
    lp.sum().backward()
    assert torch.isfinite(lp).all() and torch.isfinite(h2.grad).all()
    torch.testing.assert_close(lp, 7 * (3 * math.log(1e-6) - 1e-6 - math.lgamma(4.0)) * torch.ones(1))
    # large outputs do not overflow (softplus is linear there)
    assert torch.isfinite(head(torch.full((1, 7), 1e4)).log_prob(torch.full((1, 7), 1e4))).all()


def test_categorical_head_is_class_major_softmax():
    g = torch.Generator().manual_seed(0)
    c, d = 4, 6
    h = torch.randn(2, 5, c * d, generator=g)  # (L, B, C * D), class-major
    x = torch.randint(0, c, (5, d), generator=g).float()
    head = CategoricalLikelihood(categories=c)
    logits = h.reshape(2, 5, c, d).transpose(-1, -2)  # (L, B, D, C): logit of class k of column j is h[k * D + j]
    p = head(h)
    assert p.event_shape == (d,) and p.batch_shape == (2, 5)
    want = Categorical(logits=logits).log_prob(x.long()).sum(-1)
    closed = torch.log_softmax(logits, -1).gather(-1, x.long().expand(2, 5, d)[..., None]).squeeze(-1).sum(-1)
    torch.testing.assert_close(p.log_prob(x), want)
    torch.testing.assert_close(p.log_prob(x), closed)
    torch.testing.assert_close(p.mean, (torch.softmax(logits, -1) * torch.arange(c)).sum(-1))
    # the model's decoder output is read with the same layout, and the objectives use it
    torch.manual_seed(0)
    model = VAE(ModelConfig(data_shape=(d,), latent_dim=3, hidden=(8,), likelihood="categorical", categories=c))
    z = torch.randn(2, 5, 3, generator=g)
    hz = model.decoder(z)
    assert hz.shape == (2, 5, c * d)
    torch.testing.assert_close(decoder_log_prob(model, z, x), Categorical(logits=head.logits(hz)).log_prob(x).sum(-1))


def test_draws_follow_the_distributions():
    g = torch.Generator().manual_seed(0)
    rate = torch.tensor([0.5, 3.0, 20.0]).expand(20000, 3)
    s = PoissonLikelihood().sample(torch.log(torch.expm1(rate - 1e-6)), g)
    assert torch.equal(s, s.round()) and s.min() >= 0
    torch.testing.assert_close(s.mean(0), rate[0], rtol=0.03, atol=0.01)
    torch.testing.assert_close(s.var(0), rate[0], rtol=0.06, atol=0.01)
    probs = torch.tensor([0.1, 0.6, 0.3])
    h = probs.log()[:, None].expand(3, 2).reshape(6).expand(20000, 6)  # 2 columns, same probabilities
    s = CategoricalLikelihood(3).sample(h, g)
    assert s.shape == (20000, 2)
    freq = torch.stack([(s == k).float().mean(0) for k in range(3)], -1)
    torch.testing.assert_close(freq, probs.expand(2, 3), atol=0.01, rtol=0)


# -- training ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_poisson_training_recovers_the_generating_model(counts, poisson_models):
    ds, w, b = counts
    before, after = poisson_models
    x = ds.test
    e0, e1 = (aevb.elbo(m, x, generator=torch.Generator().manual_seed(0)).elbo.mean().item() for m in poisson_models)
    assert e1 > e0 + 40  # about -80 -> -26 nats
    ll = aevb.log_likelihood(after, x, k=200, seed=0).mean().item()
    # ground truth: log p(x) of the generating model (prior sampling, 20,000 draws) and of the best
    # model without a latent (independent Poisson columns at the training means)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(20000, 2, generator=g)
    lw = Poisson(torch.exp(z @ w.T + b)).log_prob(x[:, None, :]).sum(-1)
    true_ll = (torch.logsumexp(lw, 1) - math.log(20000)).mean().item()
    independent = Poisson(ds.train.mean(0)).log_prob(x).sum(-1).mean().item()
    assert true_ll - 1.5 < ll < true_ll + 0.5, (ll, true_ll)  # about -25.4 against -24.8
    assert ll > independent + 10  # about -38.5
    # the mean count of each column, E_z E[x|z] = exp(1 + |w|^2 / 2)
    mean = after.sample(20000, generator=torch.Generator().manual_seed(1)).mean(0)
    truth = torch.exp(b + 0.5 * w.square().sum(1))
    rel = (mean - truth).abs() / truth
    assert rel.max() < 0.12 and rel.mean() < 0.05, rel
    drawn = after.sample(20000, generator=torch.Generator().manual_seed(2), mean=False)
    assert torch.equal(drawn, drawn.round())
    torch.testing.assert_close(drawn.mean(0), mean, rtol=0.05, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("likelihood", ["poisson", "categorical"])
def test_real_counts_beat_independent_columns(likelihood):
    """digits: 8x8 counts 0..16 (on-pixels per 4x4 block). The VAE's test log p(x) must beat the
    best model with independent columns: per-column Poisson at the training mean, or the per-column
    empirical class frequencies (add-one smoothed)."""
    d = aevb.load_dataset("digits")
    ds = Dataset("digits-counts", (8, 8), *(torch.round(getattr(d, s) * 16) for s in ("train", "valid", "test")))
    extra = {"categories": 17} if likelihood == "categorical" else {}
    mc = ModelConfig(latent_dim=8, hidden=(64,), activation="relu", likelihood=likelihood, **extra)
    model = aevb.train(mc, TrainConfig(epochs=40, seed=0, lr=3e-3), dataset=ds)
    xtr, x = ds.train.reshape(-1, 64), ds.test.reshape(-1, 64)
    if likelihood == "poisson":
        independent = Poisson(xtr.mean(0).clamp(min=1e-3)).log_prob(x).sum(-1).mean().item()
    else:
        freq = torch.stack([(xtr == k).sum(0) for k in range(17)], -1).float() + 1  # (64, 17)
        independent = Categorical(probs=freq).log_prob(x.long()).sum(-1).mean().item()
    ll = aevb.log_likelihood(model, x, k=100, seed=0).mean().item()
    # about -120.4 against -184.8 (poisson) and -92.1 against -107.4 (categorical)
    assert ll > independent + (40 if likelihood == "poisson" else 10), (ll, independent)


# -- configs and bad input -----------------------------------------------------------------------


def test_categories_is_required_exactly_for_categorical_and_old_configs_load():
    with pytest.raises(ValueError, match="categorical needs categories >= 2"):
        ModelConfig(likelihood="categorical")
    with pytest.raises(ValueError, match="categories is 0 for the other likelihoods"):
        ModelConfig(likelihood="poisson", categories=3)
    m = ModelConfig(latent_dim=3, hidden=(20,))
    d = to_dict(m, TrainConfig())
    del d["model"]["categories"], d["model"]["columns"]  # a config stored before these fields existed
    assert from_dict(d)[0] == m and (m.categories, m.columns) == (0, "")
    m = ModelConfig(likelihood="categorical", categories=5)
    assert from_dict(to_dict(m))[0] == m
    assert make_likelihood(m) == CategoricalLikelihood(5)


@pytest.mark.parametrize(
    "config, values, message",
    [
        (ModelConfig(data_shape=(3,), likelihood="poisson"), [1, 2.5, 0], r"value 2.5 \(row 1, feature 1\).*counts"),
        (ModelConfig(data_shape=(3,), likelihood="poisson"), [1, 2, -1], r"value -1 \(row 1, feature 2\).*counts"),
        (ModelConfig(data_shape=(3,), likelihood="categorical", categories=3), [0, 3, 1], r"value 3.*0\.\.2"),
        (ModelConfig(data_shape=(3,), likelihood="categorical", categories=3), [0, 0.5, 1], r"value 0.5.*0\.\.2"),
    ],
)
def test_bad_data_is_a_data_error(config, values, message):
    x = torch.tensor([[0.0, 1.0, 2.0], values])
    with pytest.raises(DataError, match=message):
        check_data(x, config, "t.csv")
    check_data(x[:1], config, "t.csv")  # the good row passes


@pytest.mark.slow
def test_cli_trains_and_evaluates_counts_and_rejects_non_counts(tmp_path):
    x = _counts(300)[0].numpy()
    good, bad = tmp_path / "counts.csv", tmp_path / "bad.csv"
    good.write_text("\n".join(",".join(f"{v:g}" for v in row) for row in x) + "\n")
    bad.write_text("\n".join(",".join(f"{v + 0.5:g}" for v in row) for row in x) + "\n")

    def aevb_(*args):  # the CLI in this process (a subprocess each spent ~2 s importing torch)
        return aevb_main(tmp_path, list(args))

    common = ["--likelihood", "poisson", "--latent-dim", "2", "--hidden", "16", "--epochs", "2"]
    r = aevb_("train", "--dataset", str(good), *common, "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    r = aevb_("eval", str(tmp_path / "run"), "--k", "10")
    assert r.returncode == 0, r.stderr
    r = aevb_("train", "--dataset", str(bad), *common, "--out", str(tmp_path / "badrun"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "aevb: error:" in r.stderr and "poisson likelihood needs counts" in r.stderr
    assert not (tmp_path / "badrun").exists()


# -- mixed tables: one likelihood per group of columns -------------------------------------------

SPEC = "gaussian-learned:3,categorical4:1,poisson:2"


def test_columns_are_parsed_and_bad_specs_name_the_group():
    assert parse_columns(SPEC) == [("gaussian-learned", 3, 0), ("categorical", 1, 4), ("poisson", 2, 0)]
    assert parse_columns("bernoulli, gaussian:2") == [("bernoulli", 1, 0), ("gaussian", 2, 0)]
    for spec, message in (
        ("categorical:2", "'categorical:2': categorical needs its classes"),
        ("gaussian:3,laplace:1", "'laplace:1': the kind must be one of"),
        ("poisson:0", "'poisson:0': the count after ':' must be"),
        ("poisson:x", "'poisson:x': the count"),
    ):
        with pytest.raises(ValueError, match=message):
            ModelConfig(data_shape=(3,), likelihood="mixed", columns=spec)
    with pytest.raises(ValueError, match="likelihood mixed needs columns, and only it"):
        ModelConfig(likelihood="mixed")
    with pytest.raises(ValueError, match="likelihood mixed needs columns, and only it"):
        ModelConfig(likelihood="gaussian", columns="gaussian:64")
    with pytest.raises(ValueError, match="columns names 6 columns; the data has 7"):
        VAE(ModelConfig(data_shape=(7,), likelihood="mixed", columns=SPEC))


def test_mixed_head_is_the_groups_distributions():
    g = torch.Generator().manual_seed(0)
    cfg = ModelConfig(data_shape=(6,), latent_dim=2, hidden=(8,), likelihood="mixed", columns=SPEC)
    head = make_likelihood(cfg)
    assert head.outputs(6) == 2 * 3 + 4 * 1 + 1 * 2
    h = 2 * torch.randn(3, 5, 12, generator=g)  # (L, B, outputs)
    x = torch.cat(
        [torch.randn(5, 3, generator=g), torch.randint(0, 4, (5, 1), generator=g), torch.tensor([[0.0, 4]] * 5)], 1
    )
    mu, logvar = h[..., :3], h[..., 3:6].clamp(-9, 6)
    gauss = Normal(mu, torch.exp(0.5 * logvar))
    cat = Categorical(logits=h[..., 6:10].reshape(3, 5, 4, 1).transpose(-1, -2))
    rate = torch.nn.functional.softplus(h[..., 10:12]) + 1e-6
    want = (
        gauss.log_prob(x[:, :3]).sum(-1)
        + cat.log_prob(x[:, 3:4].long()).sum(-1)
        + Poisson(rate).log_prob(x[:, 4:]).sum(-1)
    )
    p = head(h)
    assert p.event_shape == (6,) and p.batch_shape == (3, 5)
    torch.testing.assert_close(p.log_prob(x), want)
    mean = torch.cat([mu, (cat.probs * torch.arange(4)).sum(-1), rate], -1)
    torch.testing.assert_close(p.mean, mean)
    torch.manual_seed(0)
    model = VAE(cfg)
    z = torch.randn(4, 5, 2, generator=g)
    torch.testing.assert_close(decoder_log_prob(model, z, x), model.decode(z).log_prob(x))
    s = model.draw(z[0], generator=g)
    assert s.shape == (5, 6) and torch.equal(s[:, 3:], s[:, 3:].round()) and s[:, 3].max() <= 3 and s[:, 4:].min() >= 0
    # the encoder sees log(1 + counts) in the poisson columns only
    torch.testing.assert_close(head.encoder_input(x), torch.cat([x[:, :4], torch.log1p(x[:, 4:])], 1))


def _mixed(n: int, seed: int = 0) -> torch.Tensor:
    """A table from a known model with a 2-D latent: 3 Gaussian columns (w.z + N(0, 0.1^2)), one class
    column (softmax(v.z), 4 classes), two count columns (Poisson(exp(u.z + 1)))."""
    g = torch.Generator().manual_seed(seed)
    w, v, u = torch.randn(3, 2, generator=g), 2 * torch.randn(4, 2, generator=g), 0.5 * torch.randn(2, 2, generator=g)
    z = torch.randn(n, 2, generator=g)
    gauss = z @ w.T + 0.1 * torch.randn(n, 3, generator=g)
    cls = torch.multinomial(torch.softmax(z @ v.T, -1), 1, generator=g).float()
    counts = torch.poisson(torch.exp(z @ u.T + 1), generator=g)
    return torch.cat([gauss, cls, counts], 1)


@pytest.mark.slow
def test_mixed_training_beats_independent_columns_and_matches_the_marginals():
    x = _mixed(3000)
    ds = Dataset("mixed", (6,), x[:2000], x[2000:2500], x[2500:])
    mc = ModelConfig(latent_dim=2, hidden=(64,), activation="relu", likelihood="mixed", columns=SPEC)
    before = aevb.train(mc, TrainConfig(epochs=0, seed=0), dataset=ds)
    after = aevb.train(mc, TrainConfig(epochs=30, seed=0, lr=3e-3), dataset=ds)
    xt, xtr = ds.test, ds.train
    e0, e1 = (aevb.elbo(m, xt, generator=torch.Generator().manual_seed(0)).elbo.mean().item() for m in (before, after))
    ll = aevb.log_likelihood(after, xt, k=200, seed=0).mean().item()
    # the best model with independent columns: Gaussians, class frequencies and Poisson rates fitted on train
    freq = torch.stack([(xtr[:, 3] == k).float().mean() for k in range(4)])
    independent = (
        (
            Normal(xtr[:, :3].mean(0), xtr[:, :3].std(0)).log_prob(xt[:, :3]).sum(-1)
            + Categorical(probs=freq).log_prob(xt[:, 3].long())
            + Poisson(xtr[:, 4:].mean(0)).log_prob(xt[:, 4:]).sum(-1)
        )
        .mean()
        .item()
    )
    assert e1 > e0 + 5 and ll > independent + 3, (e0, e1, ll, independent)  # -21.3 -> -8.6; -8.2 against -11.8
    # draws x ~ p(x|z), z ~ p(z) reproduce the class frequencies and the mean counts of the data
    s = after.sample(20000, generator=torch.Generator().manual_seed(1), mean=False)
    sfreq = torch.stack([(s[:, 3] == k).float().mean() for k in range(4)])
    torch.testing.assert_close(sfreq, freq, atol=0.04, rtol=0)
    torch.testing.assert_close(s[:, 4:].mean(0), xtr[:, 4:].mean(0), rtol=0.1, atol=0)


@pytest.mark.parametrize(
    "row, message",
    [
        ([0.5, -2.0, 7.0, 4.0, 1.0, 0.0], r"value 4 \(row 1, feature 3\).*class indices 0\.\.3"),
        ([0.5, -2.0, 7.0, 1.0, 1.0, 1.5], r"value 1.5 \(row 1, feature 5\).*counts"),
    ],
)
def test_mixed_bad_data_names_the_feature(row, message):
    cfg = ModelConfig(data_shape=(6,), likelihood="mixed", columns=SPEC)
    x = torch.tensor([[0.0, 0.0, 0.0, 3.0, 0.0, 2.0], row])
    with pytest.raises(DataError, match=message):
        check_data(x, cfg, "t.csv")
    check_data(x[:1], cfg, "t.csv")
    with pytest.raises(DataError, match="has 5 features per row; the model was trained on 6"):
        check_data(x[:, :5], cfg, "t.csv")


@pytest.mark.slow
def test_cli_trains_and_samples_a_mixed_table(tmp_path):
    table = tmp_path / "mixed.csv"
    table.write_text("\n".join(",".join(f"{v:g}" for v in row) for row in _mixed(300).numpy()) + "\n")

    def aevb_(*args):  # the CLI in this process (a subprocess each spent ~2 s importing torch)
        return aevb_main(tmp_path, list(args))

    common = ["--dataset", str(table), "--likelihood", "mixed", "--latent-dim", "2", "--hidden", "16", "--epochs", "2"]
    r = aevb_("train", *common, "--columns", SPEC, "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    r = aevb_("sample", str(tmp_path / "run"), "--n", "50", "--out", str(tmp_path / "s.csv"))
    assert r.returncode == 0, r.stderr
    rows = [[float(v) for v in line.split(",")] for line in (tmp_path / "s.csv").read_text().split("\n")[1:] if line]
    assert len(rows) == 50 and all(len(row) == 6 for row in rows)
    r = aevb_("train", *common, "--columns", "gaussian:3,poisson:2", "--out", str(tmp_path / "bad"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "has 6 features per row; --columns gaussian:3,poisson:2 names 5" in r.stderr
    assert not (tmp_path / "bad").exists()


# -- the heavy-tailed (student-t) decoder ----------------------------------------------------------


def test_student_t_head_tends_to_the_learned_gaussian_and_draws_with_its_variance():
    from aevb.likelihoods import LearnedGaussianLikelihood, StudentTLikelihood

    # [mu, log sigma^2] of 6 dims; float64, where lgamma of a large df keeps its precision
    h = torch.randn(4, 2 * 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    gauss = LearnedGaussianLikelihood()(h).log_prob(x)
    torch.testing.assert_close(StudentTLikelihood(df=1e7)(h).log_prob(x), gauss, atol=1e-4, rtol=0)
    assert (StudentTLikelihood(df=3.0)(h).log_prob(x) != gauss).all()
    # draws: reproducible from the generator, with Var = sigma^2 df / (df - 2)
    head, h0 = StudentTLikelihood(df=5.0), torch.zeros(1, 2).expand(200_000, 2)  # mu = 0, sigma = 1
    a, b = head.sample(h0, torch.Generator().manual_seed(3)), head.sample(h0, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert abs(a.var().item() - 5.0 / 3.0) < 0.05


@pytest.mark.slow
def test_student_t_runs_end_to_end_in_training_and_in_the_detector(tmp_path):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    x = rng.standard_t(4, size=(600, 5))
    model = aevb.train(
        aevb.ModelConfig(likelihood="student-t", df=4.0, latent_dim=2, hidden=(16,)),
        aevb.TrainConfig(epochs=5),
        dataset=Dataset(
            "t",
            (5,),
            **{s: torch.tensor(x[i::3], dtype=torch.float32) for i, s in enumerate(("train", "valid", "test"))},
        ),
    )
    assert torch.isfinite(aevb.log_likelihood(model, torch.tensor(x[:20], dtype=torch.float32), k=50)).all()
    test = np.vstack([rng.standard_t(4, size=(200, 5)), rng.standard_t(4, size=(20, 5)) + 8])
    det = aevb.AnomalyDetector(likelihood="student-t", random_state=0).fit(x)
    assert roc_auc_score(np.r_[np.zeros(200), np.ones(20)], -det.score_samples(test)) > 0.95
    det.save(tmp_path / "d")
    assert np.array_equal(aevb.AnomalyDetector.load(tmp_path / "d").score_samples(test), det.score_samples(test))
