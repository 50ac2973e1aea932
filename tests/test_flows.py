"""The inverse autoregressive flow posterior (`aevb.flows`): its log-determinant, autoregressive structure and
density against autograd Jacobians, its importance-sampled log p(x) against a linear-Gaussian model's closed
form, and `--flow iaf` through training, resume, bf16 and the CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.autograd.functional import jacobian
from torch.distributions import Independent, MultivariateNormal, Normal

import aevb
from aevb import speed
from aevb.evaluate import log_likelihood
from aevb.flows import IAF, MADE, FlowPosterior
from aevb.latent import DiagonalGaussian
from aevb.objectives import elbo
from aevb.preprocess import run_data
from aevb_process import aevb_main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _iaf(dim: int, context: int, steps: int, hidden=(16, 12), seed: int = 0) -> IAF:
    """A double-precision IAF whose weights are larger than at initialisation, so that every step moves z
    (and its gates sigma vary far from their starting value)."""
    torch.manual_seed(seed)
    flow = IAF(dim, context, hidden, steps).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.mul_(3.0)
    return flow


def _step(made: MADE, flow: IAF, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    m, s = flow._gates(made, z, h)
    sigma = torch.sigmoid(s)
    return sigma * z + (1 - sigma) * m


@pytest.mark.parametrize("dim,context,steps", [(1, 2, 1), (2, 3, 2), (3, 1, 3), (5, 4, 2), (6, 3, 4)])
def test_log_det_is_the_log_abs_det_of_the_autograd_jacobian(dim, context, steps):
    flow = _iaf(dim, context, steps, seed=dim)
    g = torch.Generator().manual_seed(steps)
    for _ in range(3):
        z0 = torch.randn(dim, generator=g, dtype=torch.float64)
        h = torch.randn(context, generator=g, dtype=torch.float64)
        jac = jacobian(lambda z, h=h: flow(z, h)[0], z0)  # (D, D): dz_T / dz_0
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign > 0  # every step's Jacobian is triangular with a positive diagonal
        torch.testing.assert_close(flow(z0, h)[1], logabs, rtol=1e-10, atol=1e-10)
    # batched (..., B, D) with a context per example: each row's own log-determinant
    z0 = torch.randn(2, 4, dim, generator=g, dtype=torch.float64)
    h = torch.randn(4, context, generator=g, dtype=torch.float64)
    z, log_det = flow(z0, h)
    for i in range(2):
        for b in range(4):
            jac = jacobian(lambda v, b=b: flow(v, h[b])[0], z0[i, b])
            torch.testing.assert_close(log_det[i, b], torch.linalg.slogdet(jac)[1], rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(z[i, b], flow(z0[i, b], h[b])[0])


def test_each_step_is_triangular_in_its_order_and_the_order_alternates():
    dim, context = 5, 3
    flow = _iaf(dim, context, steps=4, seed=1)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(dim, generator=g, dtype=torch.float64)
    h = torch.randn(context, generator=g, dtype=torch.float64)
    for t, made in enumerate(flow.steps):
        jac = jacobian(lambda v, made=made: _step(made, flow, v, h), z)  # (D, D): d out_i / d in_j
        sigma = torch.sigmoid(flow._gates(made, z, h)[1])
        torch.testing.assert_close(torch.diagonal(jac), sigma)  # the diagonal: sigma_t, the gate
        # step 0: output i depends on inputs j < i (lower triangular); step 1 the reverse order; and so on
        above, below = torch.triu(jac, 1), torch.tril(jac, -1)
        zero, used = (above, below) if t % 2 == 0 else (below, above)
        assert torch.equal(zero, torch.zeros_like(zero)), t
        assert (used.abs() > 1e-6).sum() == dim * (dim - 1) // 2, t  # and every allowed dependency is used
        z = _step(made, flow, z, h)


def _flow_posterior(b: int, dim: int, context: int, steps: int, seed: int = 0) -> FlowPosterior:
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(b, dim, generator=g, dtype=torch.float64)
    scale = torch.rand(b, dim, generator=g, dtype=torch.float64) + 0.3
    h = torch.randn(b, context, generator=g, dtype=torch.float64)
    return _iaf(dim, context, steps, seed=seed).posterior(DiagonalGaussian(loc, scale), h)


def test_rsample_with_log_prob_is_the_change_of_variables_density():
    b, dim, context = 3, 4, 2
    q = _flow_posterior(b, dim, context, steps=3)
    eps = torch.randn(5, b, dim, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    z, log_q = q.rsample_with_log_prob(eps)
    assert z.shape == (5, b, dim) and log_q.shape == (5, b) and q.noise_dim == dim
    torch.testing.assert_close(q.rsample_from(eps), z)
    base = Independent(Normal(q.base.base_dist.loc, q.base.base_dist.scale), 1)
    for i in range(5):
        for j in range(b):
            z0 = q.base.base_dist.loc[j] + q.base.base_dist.scale[j] * eps[i, j]
            jac = jacobian(lambda v, j=j: q.flow(v, q.context[j])[0], z0)
            expected = base.log_prob(z0)[j] - torch.linalg.slogdet(jac)[1]
            torch.testing.assert_close(log_q[i, j], expected, rtol=1e-10, atol=1e-10)
    # the inverse scores any z: the same density at the draws, and it recovers z_0
    torch.testing.assert_close(q.log_prob(z), log_q, rtol=1e-8, atol=1e-8)
    z0, _ = q.flow.inverse(z, q.context)
    torch.testing.assert_close(z0, q.base.rsample_from(eps), rtol=1e-8, atol=1e-8)
    # mean: the flow of the Gaussian's mean, the draw at eps = 0
    torch.testing.assert_close(q.mean, q.rsample_from(torch.zeros(b, dim, dtype=torch.float64)))


def test_a_flow_whose_networks_ignore_z_gives_the_gaussian_of_composed_affine_maps():
    # with the masked weights at zero, every step is z -> sigma_t z + (1 - sigma_t) m_t with constants of h:
    # q(z|x) is then exactly N(loc_T, diag scale_T^2), composed step by step (torch.distributions' density)
    b, dim, context = 4, 3, 2
    q = _flow_posterior(b, dim, context, steps=3, seed=2)
    with torch.no_grad():
        for made in q.flow.steps:
            made.layers[0].weight.zero_()
    loc, scale = q.base.base_dist.loc, q.base.base_dist.scale
    for made in q.flow.steps:
        m, s = q.flow._gates(made, torch.zeros(b, dim, dtype=torch.float64), q.context)
        sigma = torch.sigmoid(s)
        loc, scale = sigma * loc + (1 - sigma) * m, sigma * scale
    eps = torch.randn(6, b, dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    z, log_q = q.rsample_with_log_prob(eps)
    gaussian = Independent(Normal(loc, scale), 1)
    torch.testing.assert_close(z, loc + scale * eps)
    torch.testing.assert_close(log_q, gaussian.log_prob(z))


# --- the model with a flow posterior ----------------------------------------------------------------


def _linear_gaussian(seed: int = 0, **kw) -> tuple[aevb.VAE, torch.Tensor, torch.Tensor]:
    """A VAE with p(z) = N(0, I), x|z ~ N(Wz + c, sigma^2 I) (no hidden layers), an IAF posterior; W, c."""
    cfg = aevb.ModelConfig(
        data_shape=(3,),
        latent_dim=2,
        hidden=(),
        likelihood="gaussian",
        sigma=0.6,
        flow="iaf",
        flow_steps=2,
        flow_hidden=(16,),
        flow_context=4,
        **kw,
    )
    torch.manual_seed(seed)
    model = aevb.VAE(cfg)
    w = torch.tensor([[1.0, 0.9], [0.8, 1.1], [-0.5, 0.4]])
    c = torch.tensor([0.2, -0.1, 0.3])
    # the Gaussian under the flow: p(z|x)'s mean A (x - c), A = Lambda^-1 W^T / sigma^2, and 1.3 times its
    # marginal standard deviations, a sensible proposal before the (random) flow moves it
    precision = torch.eye(2) + w.T @ w / 0.36
    a = torch.linalg.solve(precision, w.T) / 0.36
    logvar = torch.log(1.69 * torch.diagonal(torch.linalg.inv(precision)))
    with torch.no_grad():
        model.decoder.net[0].weight.copy_(w)
        model.decoder.net[0].bias.copy_(c)
        enc = model.encoder.net[0]  # x -> [mu, logvar, h]
        enc.weight[:2].copy_(a)
        enc.bias[:2].copy_(-a @ c)
        enc.weight[2:4].zero_()
        enc.bias[2:4].copy_(logvar)
    return model, w, c


def _exact_log_px(x: torch.Tensor, w: torch.Tensor, c: torch.Tensor, sigma: float) -> torch.Tensor:
    """log N(x; c, W W^T + sigma^2 I): the linear-Gaussian model's marginal, (N,)."""
    cov = w @ w.T + sigma**2 * torch.eye(w.shape[0])
    return MultivariateNormal(c.double(), cov.double()).log_prob(x.double()).float()


def test_importance_sampled_log_px_of_a_flow_posterior_converges_to_the_closed_form():
    model, w, c = _linear_gaussian()
    x = torch.tensor([[0.5, 1.0, -0.3], [-1.2, -0.4, 0.9], [2.0, 2.5, -0.2], [0.0, 0.0, 0.0]])
    exact = _exact_log_px(x, w, c, 0.6)
    est = log_likelihood(model, x, k=5000, seed=1)
    torch.testing.assert_close(est, exact, rtol=0, atol=0.03)
    # the ELBO (Monte Carlo KL: model.kl is None for a flow) is a lower bound, below log p(x) by KL(q || p(z|x))
    assert model.kl(model.encode(x)) is None and not model.analytic_kl
    terms = elbo(model, x.repeat(2000, 1), generator=torch.Generator().manual_seed(0))
    assert (terms.elbo.reshape(2000, 4).mean(0) < exact).all()


@pytest.mark.slow
def test_fitting_a_flow_beats_the_best_diagonal_gaussian_on_a_correlated_posterior():
    # p(z|x) of the linear-Gaussian model is N(., Lambda^-1) with Lambda = I + W^T W / sigma^2: correlated.
    # The best diagonal Gaussian q stays KL = 1/2 (sum_i log Lambda_ii - log det Lambda) below log p(x)
    # (mean-field variances 1/Lambda_ii); an IAF can fit the correlation and close most of that gap.
    model, w, c = _linear_gaussian(seed=1)
    x = torch.tensor([[1.0, 1.5, -0.4]])
    precision = torch.eye(2) + w.T @ w / 0.36
    mean_field_gap = 0.5 * (torch.log(torch.diagonal(precision)).sum() - torch.logdet(precision)).item()
    assert mean_field_gap > 0.25  # the test means something
    params = [p for n, p in model.named_parameters() if not n.startswith("decoder")]
    opt = torch.optim.Adam(params, lr=0.01)
    g = torch.Generator().manual_seed(0)
    for _ in range(1500):
        opt.zero_grad()
        loss = -elbo(model, x.expand(64, 3), generator=g).elbo.mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        bound = elbo(model, x.expand(20000, 3), generator=g).elbo.mean().item()
    gap = _exact_log_px(x, w, c, 0.6).item() - bound
    assert -0.02 < gap < 0.1 * mean_field_gap, (gap, mean_field_gap)  # measured: 0.005 against 0.287


def test_flow_config_is_checked_stored_and_loaded(tmp_path, digits):
    cfg = aevb.ModelConfig(hidden=(16,), latent_dim=3, flow="iaf", flow_steps=3, flow_hidden=(8, 8), flow_context=5)
    for bad, match in (
        (dict(flow="maf"), "flow must be one of none, iaf"),
        (dict(flow_steps=0), "flow_steps must be >= 1"),
        (dict(flow_context=0), "flow_context must be >= 1"),
        (dict(flow_hidden=()), "flow_hidden sizes must be >= 1"),
        (dict(prior="vamp"), "--prior vamp"),
    ):
        with pytest.raises(ValueError, match=match):
            aevb.ModelConfig(**{**cfg.__dict__, **bad})
    with pytest.raises(aevb.AevbError, match="--free-bits needs --flow none"):
        aevb.train(cfg, aevb.TrainConfig(epochs=1, free_bits=0.5), dataset=digits)
    model = aevb.train(cfg, aevb.TrainConfig(epochs=1, objective="iwae", k=3), tmp_path / "r", dataset=digits)
    tensors = load_file(tmp_path / "r" / "model.safetensors")  # pickle-free; masks are rebuilt, not stored
    assert {k for k in tensors if k.startswith("flow.")} == {
        f"flow.steps.{t}.{name}"
        for t in range(3)
        for name in (
            "layers.0.weight",
            "layers.0.bias",
            "layers.1.weight",
            "layers.1.bias",
            "layers.2.weight",
            "layers.2.bias",
            "context.weight",
        )
    }
    assert tensors["encoder.net.2.weight"].shape == (2 * 3 + 5, 16)  # [mu, logvar, h]
    loaded = aevb.load(tmp_path / "r")
    assert loaded.config == model.config
    x = digits.test[:7]
    eps = torch.randn(4, 7, 3, generator=torch.Generator().manual_seed(0))
    a, b = model.encode(x).rsample_with_log_prob(eps), loaded.encode(x).rsample_with_log_prob(eps)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_resume_of_a_flow_run_is_bitwise_equal_to_an_uninterrupted_run(tmp_path, digits):
    cfg = aevb.ModelConfig(hidden=(16,), latent_dim=2, flow="iaf", flow_hidden=(8,), flow_context=4)
    train = aevb.TrainConfig(epochs=3, seed=2, estimator="mc")
    whole = aevb.train(cfg, train, tmp_path / "whole", dataset=digits)
    aevb.train(cfg, aevb.TrainConfig(**{**train.__dict__, "epochs": 1}), tmp_path / "part", dataset=digits)
    resumed = aevb.train(None, aevb.TrainConfig(epochs=3), tmp_path / "part", dataset=digits, resume=True)
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and any(k.startswith("flow.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_bf16_flow_objective_is_fp32_and_close_to_fp32():
    model, _, _ = _linear_gaussian()
    x = torch.randn(16, 3)
    eps = torch.randn(1, 16, 2, generator=torch.Generator().manual_seed(0))
    ref = elbo(model, x, estimator="mc", eps=eps)
    with speed.autocast("cpu", "bf16"):
        q = model.encode(x)
        z, log_q = q.rsample_with_log_prob(eps[0])
        low = elbo(model, x, estimator="mc", eps=eps)
    assert z.dtype == log_q.dtype == low.elbo.dtype == torch.float32
    # bf16 rounds the networks' products (relative 2^-8), not the densities
    torch.testing.assert_close(low.elbo, ref.elbo, rtol=0.02, atol=0.05)


@pytest.mark.slow
def test_compiled_flow_objective_matches_eager():
    model, _, _ = _linear_gaussian()
    x = torch.randn(16, 3)
    eps = torch.randn(5, 16, 2, generator=torch.Generator().manual_seed(0))
    cfg = aevb.TrainConfig(objective="iwae", k=5, compile="on")
    eager = aevb.objectives.OBJECTIVES["iwae"](model, x, cfg, eps)
    compiled = speed.objective(aevb.objectives.OBJECTIVES["iwae"], cfg)(model, x, cfg, eps)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


# --- the command line -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(shared_data: Path) -> dict:
    pythonpath = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "AEVB_DATA_DIR": str(shared_data), "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath}


def _aevb(env: dict, *args) -> subprocess.CompletedProcess:
    """`aevb ARGS` through `aevb.cli.main` in this process (a subprocess each spent ~2 s importing torch)."""
    return aevb_main(Path.cwd(), list(args), AEVB_DATA_DIR=env["AEVB_DATA_DIR"])


def _all(env: dict, commands: dict[str, list]) -> dict[str, subprocess.CompletedProcess]:
    return {name: _aevb(env, *argv) for name, argv in commands.items()}


def _ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.slow  # subprocesses: over 3 s
def test_bad_flow_values_are_one_line_cli_errors(tmp_path, env):
    base = ["train", "--dataset", "digits", "--epochs", "1", "--hidden", "8", "--no-progress"]
    cases = {
        "zero": (["--flow", "iaf", "--flow-steps", "0"], "flow_steps must be >= 1"),
        "negative": (["--flow", "iaf", "--flow-steps", "-2"], "flow_steps must be >= 1"),
        "text": (["--flow", "iaf", "--flow-steps", "two"], "--flow-steps: invalid int value"),
        "fraction": (["--flow", "iaf", "--flow-steps", "1.5"], "--flow-steps: invalid int value"),
        "name": (["--flow", "planar"], "--flow: invalid choice"),
        "context": (["--flow", "iaf", "--flow-context", "0"], "flow_context must be >= 1"),
        "free bits": (["--flow", "iaf", "--free-bits", "0.5"], "--free-bits needs --flow none"),
        "vamp": (["--flow", "iaf", "--prior", "vamp"], "--prior vamp"),
    }
    res = _all(env, {k: [*base, *flags, "--out", tmp_path / k] for k, (flags, _) in cases.items()})
    for name, (_, message) in cases.items():
        r = res[name]
        assert r.returncode != 0 and r.stdout == "", name
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("aevb: error:") and message in lines[0], (name, r.stderr)
    help_text = _ok(_aevb(env, "train", "--help"))
    assert "--flow {none,iaf}" in help_text and "(default: none)" in help_text
    assert "--flow-steps FLOW_STEPS" in help_text


@pytest.mark.slow  # subprocesses: over 3 s
def test_a_flow_run_trains_evaluates_samples_and_encodes_end_to_end(tmp_path, env):
    run = tmp_path / "flow"
    flags = ["--hidden", "32", "--latent-dim", "2", "--epochs", "3", "--seed", "1", "--no-progress"]
    flow = ["--flow", "iaf", "--flow-steps", "2", "--flow-hidden", "16", "--flow-context", "8"]
    out = _ok(_aevb(env, "train", "--dataset", "digits", *flags, *flow, "--out", run))
    assert "run saved" in out
    cfg = json.loads((run / "config.json").read_text())["model"]
    assert (cfg["flow"], cfg["flow_steps"], cfg["flow_hidden"], cfg["flow_context"]) == ("iaf", 2, [16], 8)
    res = _all(
        env,
        {
            "eval": ["eval", run, "--k", "5000", "--no-progress", "--seed", "3"],
            "sample": ["sample", run, "--n", "16", "--out", tmp_path / "s.png"],
            "reconstruct": ["reconstruct", run, "--n", "8", "--out", tmp_path / "r.png"],
            "encode": ["encode", run, "--out", tmp_path / "e.npz"],
        },
    )
    for name, r in res.items():
        _ok(r)
        assert "Traceback" not in r.stderr, name
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "r.png").stat().st_size > 0
    ev = json.loads((run / "eval_test.json").read_text())
    # the numbers of the CLI are those of the library on the same test rows and seed
    model = aevb.load(run)
    x, _, _ = run_data(model.config, "dynamic", "digits", "test", data_dir=env["AEVB_DATA_DIR"])
    assert ev["examples"] == x.shape[0] == 300
    ll = log_likelihood(model, x, k=5000, seed=3)
    assert math.isclose(ev["log_likelihood"], ll.double().mean().item(), rel_tol=0, abs_tol=1e-4)
    assert ev["log_likelihood"] > ev["elbo"]  # 5000 importance samples beat one-sample ELBO on average
    enc = np.load(tmp_path / "e.npz")
    with torch.no_grad():
        q = model.encode(x)
        mu, logvar = q.mean, 2 * q.base.base_dist.scale.log()
    np.testing.assert_allclose(enc["mu"], mu.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(enc["logvar"], logvar.numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(enc["mu"], q.base.mean.numpy(), atol=1e-3)  # the flow moved the code
