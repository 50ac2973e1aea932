"""The variants of issue 8 against ground truth: beta / warm-up / free bits, active units, IWAE
training, conv and residual networks, mixture priors and the VampPrior, aggregate-posterior samples,
interpolation and traversals; the CLI end to end. Tiny models on the built-in `digits`."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

import aevb
from aevb import VAE, ModelConfig, TrainConfig, elbo, iwae, log_weights
from aevb.config import from_dict, to_dict
from aevb.evaluate import active_units, posterior_mean_variance
from aevb.objectives import kl_per_dim, regularised_elbo
from aevb.preprocess import split
from aevb.sampling import GaussianMixture, fit_aggregate, interpolate, posterior_means, traverse
from aevb.train import kl_weight_at

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def trained(digits):
    """An ELBO-trained and an IWAE (k=5)-trained 64-64-8 model, 40 epochs each (a few seconds)."""
    out = {}
    for objective in ("elbo", "iwae"):
        cfg = TrainConfig(epochs=40, objective=objective, k=5, seed=0)
        out[objective] = aevb.train(ModelConfig(latent_dim=8, hidden=(64,)), cfg, dataset=digits)
    return out


def _x(digits, name="test"):
    return split(digits, name, "dynamic")


# -- defaults are today's model ------------------------------------------------------------------


def test_old_configs_load_with_defaults_that_are_todays_model():
    m, t = ModelConfig(latent_dim=3, hidden=(20,)), TrainConfig(epochs=2)
    d = to_dict(m, t)
    for f in ("arch", "channels", "prior", "prior_components"):
        del d["model"][f]
    for f in ("beta", "kl_warmup", "free_bits"):
        del d["train"][f]
    m2, t2 = from_dict(d)
    assert (m2, t2) == (m, t) and not t2.regularised
    torch.manual_seed(0)
    keys = set(VAE(m2).state_dict())  # no new tensors: old model.safetensors files load unchanged
    assert keys == {f"{n}.net.{i}.{w}" for n in ("encoder", "decoder") for i in (0, 2) for w in ("weight", "bias")}


# -- beta-VAE, KL warm-up, free bits ---------------------------------------------------------------


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


# -- networks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(28, 28), (3, 32, 32), (7, 5), (1, 9, 6)])
def test_conv_networks_fit_any_image_size_and_keep_examples_apart(shape):
    torch.manual_seed(0)
    cfg = ModelConfig(data_shape=shape, arch="conv", likelihood="gaussian-learned", hidden=(32,), channels=(8, 16))
    model = VAE(cfg)
    x = torch.rand(5, *shape)
    q = model.encode(x)
    assert q.mean.shape == (5, 2)
    p = model.decode(torch.randn(3, 5, 2))
    d = math.prod(shape)
    assert p.batch_shape == (3, 5) and p.event_shape == (d,)
    # each example's output depends on that example alone (no mixing across the batch)
    torch.testing.assert_close(model.encode(x[2:3]).mean, q.mean[2:3])
    h = model.decoder(torch.randn(4, 2))
    assert h.shape == (4, 2 * d)


def test_conv_and_resmlp_learn_digits(digits):
    x = _x(digits, "valid")
    for cfg in (
        ModelConfig(latent_dim=8, hidden=(64,), arch="conv", channels=(16, 32), activation="relu"),
        ModelConfig(latent_dim=8, hidden=(64, 64), arch="resmlp", activation="relu"),
    ):
        torch.manual_seed(0)
        before = aevb.elbo_terms(VAE(ModelConfig(**{**cfg.__dict__, "data_shape": (8, 8)})), x).elbo.mean()
        m = aevb.train(cfg, TrainConfig(epochs=8), dataset=digits)
        after = aevb.elbo_terms(m, x).elbo.mean()
        assert before < -40 and after > -32, (cfg.arch, before, after)


def test_resmlp_config_and_conv_on_tables_are_refused():
    with pytest.raises(ValueError, match="equal hidden sizes"):
        ModelConfig(arch="resmlp", hidden=(64, 32))
    with pytest.raises(ValueError, match="image data"):
        ModelConfig(arch="conv", data_shape=(10,))


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


def test_vamp_and_mog_train_and_free_bits_need_the_normal_prior(digits):
    for prior in ("mog", "vamp"):
        rec = []
        cfg = ModelConfig(latent_dim=4, hidden=(32,), prior=prior, prior_components=5)
        aevb.train(cfg, TrainConfig(epochs=4), dataset=digits, on_epoch=rec.append)
        assert rec[-1]["valid_elbo"] > rec[0]["valid_elbo"]
    with pytest.raises(aevb.AevbError, match="free-bits needs --prior normal"):
        aevb.train(ModelConfig(prior="mog"), TrainConfig(epochs=1, free_bits=0.5), dataset=digits)


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


# -- command line -------------------------------------------------------------------------------------


def _aevb(cwd, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-m", "aevb", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_variants_end_to_end(tmp_path):
    r = _aevb(
        tmp_path,
        "train",
        "--out",
        "run",
        "--epochs",
        "3",
        "--latent-dim",
        "3",
        "--hidden",
        "32",
        "--arch",
        "conv",
        "--channels",
        "8",
        "16",
        "--activation",
        "relu",
        "--beta",
        "0.5",
        "--kl-warmup",
        "1",
        "--free-bits",
        "0.05",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["model"]["arch"] == "conv" and cfg["model"]["channels"] == [8, 16] and cfg["train"]["beta"] == 0.5
    r = _aevb(tmp_path, "eval", "run", "--k", "20", "--no-progress")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "run" / "eval_test.json").read_text())
    assert res["latent_dim"] == 3 and 0 <= res["active_units"] <= 3
    assert res["active_units"] == sum(v > 0.01 for v in res["posterior_mean_variance"])
    assert f"active units {res['active_units']} of 3" in r.stdout
    for args, out in (
        (("sample", "run", "--from", "aggregate", "--components", "3"), "samples.png"),
        (("interpolate", "run", "--from", "2", "--to", "5", "--steps", "6"), "interpolation.png"),
        (("traverse", "run", "--index", "0", "--n", "5"), "traversals.png"),
    ):
        r = _aevb(tmp_path, *args)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "run" / out).stat().st_size > 0
    assert (tmp_path / "run" / "aggregate-3.safetensors").exists()
    for args, msg, code in (
        (("traverse", "run", "--dims", "7"), "--dims 7 is out of range", 1),
        (("interpolate", "run", "--to", "100000"), "row 100000 is out of range", 1),
        (("train", "--out", "r2", "--prior", "mog", "--free-bits", "1"), "--free-bits needs --prior normal", 1),
        (("train", "--out", "r3", "--arch", "bogus"), "invalid choice", 2),
    ):
        r = _aevb(tmp_path, *args)
        assert r.returncode == code and msg in r.stderr and "Traceback" not in r.stderr, r.stderr


# -- colour images ---------------------------------------------------------------------------------


def test_tile_places_rgb_pixels_exactly():
    from aevb.plots import is_image, tile

    imgs = np.zeros((3, 3, 2, 2), dtype=np.float32)  # (N, C, H, W)
    imgs[1, 0] = 1.0  # image 1 is red
    imgs[2, 2, 1, 1] = 0.5  # image 2 has one half-blue pixel
    m = tile(imgs, ncols=3, pad=1)
    assert m.shape == (4, 10, 3)
    assert (m[1:3, 4:6] == [1.0, 0.0, 0.0]).all()  # image 1
    assert (m[2, 8] == [0.0, 0.0, 0.5]).all() and (m[1, 7] == 0.0).all()  # image 2
    assert (m[0] == 1.0).all()  # white padding
    assert is_image((3, 32, 32)) and is_image((28, 28)) and not is_image((5, 32, 32)) and not is_image((784,))


def test_colour_images_from_a_file_train_a_conv_vae_and_come_out_as_rgb_pngs(tmp_path):
    """A channels-last uint8 (N, 32, 32, 3) .npy of coloured squares: loaded channels first, scaled to
    [0, 1], trained with --arch conv, and written as RGB grids (the inputs' pure colours survive)."""
    import matplotlib.image

    rng = np.random.default_rng(0)
    x = np.zeros((240, 32, 32, 3), dtype=np.uint8)
    for i in range(len(x)):
        r, c = rng.integers(0, 20, 2)
        x[i, r : r + 12, c : c + 12, i % 3] = 255  # a red, green or blue square
    np.save(tmp_path / "squares.npy", x)
    ds = aevb.load_dataset(str(tmp_path / "squares.npy"))
    assert ds.shape == (3, 32, 32) and float(ds.train.max()) == 1.0
    flags = ["--arch", "conv", "--channels", "8", "16", "--hidden", "32", "--latent-dim", "4", "--epochs", "2"]
    r = _aevb(tmp_path, "train", "--dataset", "squares.npy", *flags, "--out", "run", "--no-progress")
    assert r.returncode == 0, r.stderr
    for args in (
        ("sample", "run", "--n", "16", "--out", "s.png"),
        ("reconstruct", "run", "--n", "16", "--out", "r.png"),
    ):
        assert _aevb(tmp_path, *args).returncode == 0
    assert matplotlib.image.imread(tmp_path / "s.png").shape[2] in (3, 4)  # an RGB(A) picture
    rgb = matplotlib.image.imread(tmp_path / "r.png")[..., :3].reshape(-1, 3)  # inputs above reconstructions
    for colour in np.eye(3):  # the 16 test inputs have squares of each pure colour
        assert (np.abs(rgb - colour).max(1) < 0.05).sum() > 50, colour
