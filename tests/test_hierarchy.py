"""Hierarchical latents (aevb.hierarchy) against the two-layer linear-Gaussian model of tests/linear_gaussian.py,
whose log p(x) is a closed-form Gaussian: with the true posterior the ELBO is exact, and a perturbed posterior
gives the IWAE bounds' ordering.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.distributions import MultivariateNormal

import aevb
from aevb import ModelConfig, TrainConfig
from aevb.evaluate import evaluation_record, kl_per_layer, log_likelihood
from aevb.objectives import elbo, iwae, log_weights
from aevb_process import aevb_main, aevb_ranks
from linear_gaussian import D1, D2, INFERENCE, linear_gaussian_truth, linear_gaussian_vae, perturbed

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def truth():
    """The generative parameters and 20 data points x drawn from the model."""
    return linear_gaussian_truth()


@pytest.mark.parametrize("inference", INFERENCE)
def test_the_elbo_is_exact_under_the_true_posterior(truth, inference):
    model = linear_gaussian_vae(truth, inference)
    x, log_px = truth["x"], truth["marginal"].log_prob(truth["x"])
    g = torch.Generator().manual_seed(1)
    lw = log_weights(model, x, k=30, generator=g)  # (30, 20): every weight is p(x) itself
    torch.testing.assert_close(lw, log_px.expand_as(lw), atol=1e-9, rtol=0)
    terms = elbo(model, x, samples=3, estimator="mc", generator=g)  # every draw's log p(x, z) - log q(z|x) is log p(x)
    torch.testing.assert_close(terms.elbo, log_px, atol=1e-9, rtol=0)
    assert model.kl(model.encode(x)) is None  # no closed form as a whole: per layer along the draws (kl_along)
    torch.testing.assert_close(terms.kl, terms.log_px_z - log_px, atol=1e-9, rtol=0)
    # with the layers' closed forms the draws no longer cancel exactly, but the mean is still log p(x)
    analytic = elbo(model, x.repeat(500, 1), generator=g).elbo.view(500, -1)
    se = analytic.std(0) / math.sqrt(500)
    assert (se > 1e-3).all() and ((analytic.mean(0) - log_px).abs() < 4 * se).all()


@pytest.mark.parametrize("inference", INFERENCE)
def test_log_prior_and_posterior_densities_are_the_gaussians(truth, inference):
    """log p(z) is log N(z_2; 0, I) + log N(z_1; A z_2 + a, S); log q of given z equals log q of q's own draws."""
    model = linear_gaussian_vae(truth, inference)
    g = torch.Generator().manual_seed(2)
    z = torch.randn(7, D1 + D2, generator=g, dtype=torch.float64)
    z1, z2 = z[:, :D1], z[:, D1:]
    want = MultivariateNormal(torch.zeros(D2, dtype=z.dtype), torch.eye(D2, dtype=z.dtype)).log_prob(z2)
    want = want + MultivariateNormal(z2 @ truth["A"].T + truth["a"], torch.diag(truth["S"])).log_prob(z1)
    torch.testing.assert_close(model.log_prior(z), want, atol=1e-10, rtol=0)
    q = model.encode(truth["x"])
    eps = torch.randn(4, 20, D1 + D2, generator=g, dtype=torch.float64)
    zq, lq = q.rsample_with_log_prob(eps)
    torch.testing.assert_close(q.log_prob(zq), lq, atol=1e-10, rtol=0)
    torch.testing.assert_close(q.rsample_from(eps), zq)
    # for linear nets the pass of conditional means is E_q[z]
    mean = q.rsample_from(torch.randn(20000, 20, D1 + D2, generator=g, dtype=torch.float64)).mean(0)
    torch.testing.assert_close(q.mean, mean, atol=0.05, rtol=0)


def test_ancestral_samples_have_the_prior_moments(truth):
    model = linear_gaussian_vae(truth, "bottom-up")
    z = model.sample_prior(40000, torch.Generator().manual_seed(3))
    assert z.shape == (40000, D1 + D2)
    A, a, S = truth["A"], truth["a"], truth["S"]
    cov = torch.block_diag(A @ A.T + torch.diag(S), torch.eye(D2, dtype=A.dtype))
    cov[:D1, D1:], cov[D1:, :D1] = A, A.T  # Cov(z_1, z_2) = A
    torch.testing.assert_close(z.mean(0), torch.cat([a, torch.zeros(D2, dtype=a.dtype)]), atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), cov, atol=0.06, rtol=0)


@pytest.mark.parametrize("inference", INFERENCE)
def test_bounds_are_ordered_and_below_log_px(truth, inference):
    """E[ELBO] <= E[L_5] <= E[L_50] <= log p(x), each gap more than 4 standard errors of the Monte Carlo
    means over 300 repetitions of 20 points."""
    model = perturbed(linear_gaussian_vae(truth, inference))
    x = truth["x"].repeat(300, 1)  # (6000, D)
    log_px = truth["marginal"].log_prob(truth["x"]).repeat(300)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        bounds = [elbo(model, x, generator=g).elbo, iwae(model, x, 5, generator=g), iwae(model, x, 50, generator=g)]
    chain = [*bounds, log_px]
    for lo, hi in zip(chain, chain[1:]):
        gap = hi - lo
        assert gap.mean() > 4 * gap.std() / math.sqrt(gap.numel()), (gap.mean(), gap.std())
    assert (log_px - bounds[0]).mean() > 0.5  # the perturbation is not a small one


@pytest.mark.parametrize("inference", INFERENCE)
def test_importance_sampled_log_px_converges_to_the_closed_form(truth, inference):
    """`aevb eval`'s estimator with k = 5000 is within 4 standard errors (delta method, per example) of
    log p(x), while the ELBO is far below it."""
    model = perturbed(linear_gaussian_vae(truth, inference))
    x, log_px = truth["x"], truth["marginal"].log_prob(truth["x"])
    est = log_likelihood(model, x, k=5000, batch_size=7).double()
    with torch.no_grad():
        w = log_weights(model, x, k=5000, generator=torch.Generator().manual_seed(5)).exp()  # (k, B) / p(x) scale
    se = w.std(0) / (math.sqrt(5000) * w.mean(0))  # standard error of log(mean w)
    assert ((est - log_px).abs() < 4 * se + 1e-6).all(), (est - log_px).abs() / se
    assert (log_px - elbo(model, x).elbo.detach()).mean() > 0.5


def test_evaluation_record_reports_active_units_per_layer(truth):
    model = linear_gaussian_vae(truth, "bottom-up")
    rec = evaluation_record(model, truth["x"], k=10)
    assert rec["latents"] == [D1, D2] and rec["latent_dim"] == D1 + D2
    var = torch.tensor(rec["posterior_mean_variance"])
    mean = model.encode(truth["x"]).mean.detach()
    torch.testing.assert_close(var, mean.var(0).float(), atol=1e-6, rtol=1e-4)
    assert rec["active_units_per_layer"] == [int((var[:D1] > 0.01).sum()), int((var[D1:] > 0.01).sum())]
    assert rec["active_units"] == sum(rec["active_units_per_layer"])


@pytest.mark.parametrize("inference", INFERENCE)
def test_evaluation_record_splits_the_kl_by_layer(truth, inference):
    """kl_per_layer sums to the record's kl (the same draws); for bottom-up inference, whose q is linear-Gaussian
    here, its mean over 400 draws per point is the closed-form KL of the joint q(z_1, z_2 | x) from p(z_1, z_2)
    (torch.distributions), within 4 standard errors."""
    model = perturbed(linear_gaussian_vae(truth, inference))
    x = truth["x"].repeat(400, 1)
    rec = evaluation_record(model, x, k=1)
    assert len(rec["kl_per_layer"]) == 2 and sum(rec["kl_per_layer"]) == pytest.approx(rec["kl"], abs=1e-9)
    if inference != "bottom-up":
        return
    q = model.encode(truth["x"])
    m1, v1 = q.mean[:, :D1].detach(), q.stddev[:, :D1].detach() ** 2  # q(z_1|x)
    up = model.hierarchy.up[0]  # q(z_2|z_1) = N(W z_1 + c, diag v)
    W, c, v = up.weight[:D2].detach(), up.bias[:D2].detach(), up.bias[D2:].detach().exp()
    mean_q = torch.cat([m1, m1 @ W.T + c], 1)
    V1 = torch.diag_embed(v1)
    cov_q = torch.cat([torch.cat([V1, V1 @ W.T], 2), torch.cat([W @ V1, W @ V1 @ W.T + torch.diag(v)], 2)], 1)
    A, a, S = truth["A"], truth["a"], truth["S"]  # p(z_2) = N(0, I), p(z_1|z_2) = N(A z_2 + a, diag S)
    mean_p = torch.cat([a, torch.zeros(D2, dtype=a.dtype)])
    cov_p = torch.cat([torch.cat([A @ A.T + torch.diag(S), A], 1), torch.cat([A.T, torch.eye(D2, dtype=A.dtype)], 1)])
    exact = torch.distributions.kl_divergence(MultivariateNormal(mean_q, cov_q), MultivariateNormal(mean_p, cov_p))
    assert abs(rec["kl"] - exact.mean().item()) < 4 * rec["kl_se"], (rec["kl"], exact.mean().item(), rec["kl_se"])
    # the top layer's term alone: E_{z_1 ~ q} KL(N(W z_1 + c, diag v) || N(0, I)), in closed form
    m2, s2 = m1 @ W.T + c, torch.einsum("ij,bjk,lk->bil", W, V1, W).diagonal(dim1=1, dim2=2)
    top = 0.5 * (v + m2**2 + s2 - 1 - v.log()).sum(1)
    per = kl_per_layer(model, x)[:, 1]
    assert rec["kl_per_layer"][1] == pytest.approx(per.mean().item(), abs=1e-12)
    assert abs(per.mean() - top.mean()) < 4 * per.std() / math.sqrt(len(per)), (per.mean(), top.mean())


def test_the_report_shows_a_stacks_kl_per_layer(tmp_path, digits):
    from aevb.checkpoint import read_config
    from aevb.preprocess import run_data
    from aevb.report import write_report

    m = ModelConfig(latents=(6, 3), latent_hidden=(16,), hidden=(32,))
    aevb.train(m, TrainConfig(epochs=1, seed=1), tmp_path / "r", dataset=digits)
    page = write_report(tmp_path / "r", k=5).read_text()
    model, train_cfg = aevb.load(tmp_path / "r"), read_config(tmp_path / "r")[1]
    x = run_data(model.config, train_cfg.binarize, train_cfg.dataset, "test")[0]  # the binarised test rows
    rec = evaluation_record(model, x, k=5)  # seed 0, as the report's
    shown = ", ".join(f"z_{i + 1}: {v:.3f}" for i, v in enumerate(rec["kl_per_layer"]))
    assert f"<tr><th>KL per layer (nats)</th><td>{shown}</td></tr>" in page


# --- training, resume, checkpoints, CLI ---------------------------------------------------------------


@pytest.mark.parametrize("objective", ["iwae", "elbo"])  # elbo: estimator B, the layers' closed-form KL terms
@pytest.mark.parametrize("inference", INFERENCE)
def test_resume_after_a_crash_is_bitwise_equal(tmp_path, inference, objective, digits):
    m = ModelConfig(latents=(6, 3), latent_hidden=(16,), hidden=(32,), inference=inference)
    cfg = TrainConfig(epochs=2, checkpoint_every=4, seed=1, objective=objective, k=3)
    whole = aevb.train(m, cfg, tmp_path / "whole", dataset=digits)

    def crash(s):  # epoch 2, batch 7; the last checkpoint is step 16, inside epoch 2
        if s.epoch == 2 and s.done == 700:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        aevb.train(m, cfg, tmp_path / "part", dataset=digits, on_step=crash)
    resumed = aevb.train(None, None, tmp_path / "part", dataset=digits, resume=True)
    assert whole.state_dict().keys() == resumed.state_dict().keys()
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    # the checkpoint is safetensors + JSON; loading it rebuilds the stack with no pickle
    saved = load_file(str(tmp_path / "part" / "model.safetensors"))
    assert any(k.startswith("hierarchy.up.0.") for k in saved) and any(k.startswith("hierarchy.down.0.") for k in saved)
    loaded = aevb.load(tmp_path / "part")
    assert loaded.config == resumed.config and loaded.config.latent_dim == 6
    for k, v in resumed.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def _aevb(*args, cwd):
    """`aevb ARGS` run in this process (the CLI's numbers and files; the process boundary is tested elsewhere)."""
    return aevb_main(cwd, list(args))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--latents", "0"], "latents (layer sizes) must be >= 1, got [0]"),
        (["--latents", "4", "-2"], "latents (layer sizes) must be >= 1, got [4, -2]"),
        (["--latents"], "argument --latents: expected at least one argument"),
        (["--latents", "4", "x"], "argument --latents: invalid int value: 'x'"),
        (["--latent-dim", "5", "--latents", "4", "2"], "give --latent-dim (one layer) or --latents"),
        (["--latents", "4", "2", "--inference", "up"], "argument --inference: invalid choice: 'up'"),
        (["--latents", "4", "2", "--prior", "mog"], "top layer: use --prior normal"),
        (["--latents", "4", "2", "--latent-hidden", "0"], "latent_hidden sizes must be >= 1"),
        (["--latents", "4", "2", "--free-bits", "0.1"], "--free-bits is for one latent layer"),
        (["--inference", "ladder"], "inference ladder is for a stack of latents"),
        (["--latents", "4", "--inference", "ladder"], "one layer has no top-down pass"),
    ],
)
def test_bad_latents_are_one_line_errors(tmp_path, flags, message):
    r = aevb_main(tmp_path, ["train", *flags, "--epochs", "1", "--out", "run"])  # in-process: no torch import
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aevb: error: ") and message in lines[0], r.stderr
    assert not (tmp_path / "run").exists()


def test_latents_set_latent_dim_and_one_layer_is_the_plain_vae():
    assert ModelConfig(latents=(7, 3)).latent_dim == 7
    assert ModelConfig(latents=(7, 3), latent_dim=7).layers == (7, 3)
    with pytest.raises(ValueError, match="latent_dim 5 disagrees with latents"):
        ModelConfig(latents=(7, 3), latent_dim=5)
    torch.manual_seed(0)
    one = aevb.VAE(ModelConfig(latents=(4,)))
    torch.manual_seed(0)
    plain = aevb.VAE(ModelConfig(latent_dim=4))
    assert one.hierarchy is None and one.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(one.state_dict().values(), plain.state_dict().values()))


def test_burda_default_shapes():
    """--latents 100 50 --hidden 200 200: x-200-200-z1(100)-100-100-z2(50), the decoder mirroring it."""
    model = aevb.VAE(ModelConfig(data_shape=(784,), latents=(100, 50), hidden=(200, 200)))
    shapes = lambda net: [tuple(m.weight.shape) for m in net.modules() if isinstance(m, nn.Linear)]  # noqa: E731
    assert shapes(model.encoder) == [(200, 784), (200, 200), (200, 200)]
    assert shapes(model.hierarchy.up[0]) == [(100, 100), (100, 100), (100, 100)]
    assert shapes(model.hierarchy.down[0]) == [(100, 50), (100, 100), (200, 100)]
    assert shapes(model.decoder) == [(200, 100), (200, 200), (784, 200)]
    assert model.noise_dim == 150 and model.top_dim == 50


@pytest.mark.slow  # trains and runs six commands: over 3 s
def test_cli_hierarchical_run_end_to_end(tmp_path):
    flags = ["--latents", "6", "2", "--hidden", "32", "--epochs", "3", "--out", "run", "--no-progress"]
    r = _aevb("train", *flags, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _aevb("eval", "run", "--k", "50", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "per layer, z_1 first:" in r.stdout and "of 6, " in r.stdout and "of 2)" in r.stdout
    res = json.loads((tmp_path / "run" / "eval_test.json").read_text())
    shown = ", ".join(f"{v:.3f}" for v in res["kl_per_layer"])
    assert f"  KL per layer, z_1 first: {shown} nats\n" in r.stdout and len(res["kl_per_layer"]) == 2
    for cmd in (["sample", "run", "--n", "8"], ["reconstruct", "run", "--n", "4"], ["manifold", "run", "--n", "3"]):
        r = _aevb(*cmd, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    r = _aevb("encode", "run", "--out", "e.npz", "--plot", "e.png", cwd=tmp_path)  # the top layer is 2-D
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "e.npz", allow_pickle=False) as f:
        assert f["mu"].shape == (300, 8) and f["logvar"].shape == (300, 8)  # every layer, z_1 first
    assert all(
        (tmp_path / "run" / f).stat().st_size > 0 for f in ("samples.png", "manifold.png", "reconstructions.png")
    )
    assert (tmp_path / "e.png").stat().st_size > 0


@pytest.mark.parametrize("inference", INFERENCE)
def test_anomaly_scores_of_a_stack(truth, inference):
    """The detector's scores see the stack through the latent interface: under the true posterior the ELBO
    score (the layers' closed-form KL terms, one draw per row) has mean log p(x); the log-likelihood score of a
    worse posterior converges to it."""
    from aevb.anomaly.scores import elbo_score, log_likelihood_score

    x, log_px = truth["x"], truth["marginal"].log_prob(truth["x"])
    vae = linear_gaussian_vae(truth, inference)
    score = torch.stack([elbo_score(vae, x, 1, seed=s) for s in range(500)])  # (500, N): a draw per seed
    assert ((score.mean(0) - log_px).abs() < 4 * score.std(0) / math.sqrt(500)).all()
    model = perturbed(linear_gaussian_vae(truth, inference))
    est = log_likelihood_score(model, x, 2000, batch_size=6)
    # every row the seed's noise, whatever the batching
    torch.testing.assert_close(est, log_likelihood(model, x, k=2000, batch_size=20, shared_noise=True))
    with torch.no_grad():
        w = log_weights(model, x, k=2000, generator=torch.Generator().manual_seed(6)).exp()
    se = w.std(0) / (math.sqrt(2000) * w.mean(0))
    assert ((est.double() - log_px).abs() < 4 * se).all()


def test_explorer_shows_the_top_layer(tmp_path, digits):
    from aevb.serve.explorer import Explorer

    model = aevb.train(
        ModelConfig(latents=(6, 2), hidden=(32,)), TrainConfig(epochs=1), tmp_path / "run", dataset=digits
    )
    ex = Explorer(tmp_path / "run", k=5)
    assert ex.info()["latent_dim"] == 2 and ex.mu.shape == (300, 2)
    z = torch.tensor([[0.5, -1.0]])
    with torch.no_grad():  # the layers below the top at the means of p(z_1 | z_2)
        want = model.decode(model.from_top(z)).mean
        mu1 = model.hierarchy.conditional(0, z)[0]
        torch.testing.assert_close(model.from_top(z), torch.cat([mu1, z], -1))
    torch.testing.assert_close(torch.tensor(ex.decode(ex.parse_z([0.5, -1.0]))), want)
    s = ex.sample({"n": 3, "seed": 4})
    with torch.no_grad():
        whole = model.sample_prior(3, torch.Generator().manual_seed(4))
        torch.testing.assert_close(torch.tensor(s["x"]), model.decode(whole).mean)
    torch.testing.assert_close(torch.tensor(s["z"]), whole[:, 6:])


@pytest.mark.slow
def test_two_processes_follow_one_for_a_ladder_stack(tmp_path):
    """2 processes (gloo, started as torchrun starts them) train the ladder stack as one process does, and
    evaluate it the same."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    env = {k: v for k, v in env.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    flags = ["train", "--latents", "6", "3", "--inference", "ladder", "--hidden", "32", "--epochs", "3"]
    flags += ["--seed", "3", "--no-progress", "--out"]
    # the single-process halves run in this process (a new one spent ~2 s importing torch)
    r = aevb_main(tmp_path, [*flags, "one"])
    assert r.returncode == 0, r.stderr[-2000:]
    aevb_ranks(tmp_path, env, 2, *flags, "two")
    a, b = (
        load_file(str(tmp_path / "one" / "model.safetensors")),
        load_file(str(tmp_path / "two" / "model.safetensors")),
    )
    assert a.keys() == b.keys() and any(k.startswith("hierarchy.") for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=0, msg=k)
    results, evaluate = [], ["eval", "one", "--k", "1000", "--no-progress"]
    r = aevb_main(tmp_path, evaluate)
    assert r.returncode == 0, r.stderr[-2000:]
    results.append(json.loads((tmp_path / "one" / "eval_test.json").read_text()))
    aevb_ranks(tmp_path, env, 2, *evaluate)
    results.append(json.loads((tmp_path / "one" / "eval_test.json").read_text()))
    assert results[1]["log_likelihood"] == pytest.approx(results[0]["log_likelihood"], rel=1e-6, abs=1e-5)
