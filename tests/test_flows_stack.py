"""`--flow iaf` on every layer of a stack of latents (aevb.hierarchy with aevb.flows): the exact density
against the autograd Jacobian of the whole draw, the importance-sampled log p(x) against the two-layer
linear-Gaussian model's closed form, the CLI's train / eval / resume, and the combinations it refuses."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributions import Normal

import aevb
from aevb import ModelConfig
from aevb.evaluate import log_likelihood
from aevb.objectives import elbo, log_weights
from aevb.preprocess import run_data
from aevb_process import aevb_main, assert_bitwise_equal, one_line_error, tensors
from linear_gaussian import INFERENCE, linear_gaussian_truth, linear_gaussian_vae, random_stack


def _flow_stack(inference: str, latents=(3, 2, 2), seed: int = 0) -> aevb.VAE:
    return random_stack(inference, latents, "iaf", seed)


@pytest.mark.parametrize("inference", INFERENCE)
def test_log_q_of_a_flow_stack_is_the_change_of_variables_density_of_the_whole_draw(inference):
    """log q(z|x) along the draw = log N(eps; 0, I) - log |det dz/deps| of the full (sum d x sum d) Jacobian,
    per example; `log_prob` (each layer's inverse) of the same z agrees."""
    model = _flow_stack(inference)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64)
    q = model.encode(x)
    assert q.noise_dim == model.noise_dim == 7
    eps = torch.randn(2, 4, 7, generator=g, dtype=torch.float64)  # two draws per example
    z, log_q = q.rsample_with_log_prob(eps)
    assert z.shape == (2, 4, 7) and log_q.shape == (2, 4)
    for s in range(2):
        for b in range(4):

            def draw(e, s=s, b=b):
                rows = eps[s].clone()
                rows[b] = e
                return q.rsample_from(rows)[b]

            jac = torch.autograd.functional.jacobian(draw, eps[s, b])  # (7, 7)
            expected = Normal(0.0, 1.0).log_prob(eps[s, b]).sum() - torch.linalg.slogdet(jac)[1]
            torch.testing.assert_close(log_q[s, b], expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(q.log_prob(z), log_q, rtol=0, atol=1e-8)
    # every layer's flow is on the draw: each IAF's parameters get a gradient from log q
    log_q.sum().backward()
    for flow in (model.flow, *model.hierarchy.flows):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in flow.parameters())


def test_flow_stack_parameters_and_checkpoint_names():
    """Layer 1's IAF is the model's `flow` (the name a one-layer flow run has), layers 2..L's `hierarchy.flows`;
    each `up` net also emits its layer's context. A stack without flows keeps its names and initial draws."""
    model = _flow_stack("bottom-up")
    names = model.state_dict().keys()
    assert {n.split(".")[0] for n in names if "flow" in n} == {"flow", "hierarchy"}
    assert model.flow.dim == 3 and [f.dim for f in model.hierarchy.flows] == [2, 2]
    assert [up.net[-1].out_features for up in model.hierarchy.up] == [2 * 2 + 3, 2 * 2 + 3]
    assert not any(".mask" in n for n in names)  # MADE masks are rebuilt from the config, not saved

    def digest(cfg: ModelConfig) -> str:  # names, shapes and initial values under one seed
        torch.manual_seed(0)
        h = hashlib.sha256()
        for n, t in aevb.VAE(cfg).state_dict().items():
            h.update(f"{n}:{tuple(t.shape)}:".encode())
            h.update(t.detach().numpy().tobytes())
        return h.hexdigest()[:16]

    stack = ModelConfig(data_shape=(6,), hidden=(8,), latents=(4, 2), likelihood="gaussian")
    # the digests of the commit before flows on stacks (f70d29d): existing runs load unchanged
    assert digest(stack) == "cec0443e1f850f56"
    assert digest(dataclasses.replace(stack, inference="ladder")) == "ac12b325266a34d4"
    one = ModelConfig(data_shape=(6,), hidden=(8,), latent_dim=3, flow="iaf", flow_hidden=(5,), flow_context=2)
    assert digest(one) == "d395eb3b16f6ca52"


@pytest.mark.parametrize("inference", INFERENCE)
def test_a_flow_stack_under_bf16_autocast_keeps_fp32_densities_close_to_fp32(inference):
    cfg = ModelConfig(data_shape=(5,), hidden=(16,), latents=(3, 2), inference=inference, likelihood="gaussian")
    cfg = dataclasses.replace(cfg, flow="iaf", flow_hidden=(16,), flow_context=4)
    torch.manual_seed(0)
    model, x = aevb.VAE(cfg), torch.randn(8, 5)
    fp32 = elbo(model, x, estimator="mc", generator=torch.Generator().manual_seed(0)).elbo
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = elbo(model, x, estimator="mc", generator=torch.Generator().manual_seed(0)).elbo
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, fp32, rtol=0, atol=0.05)  # bf16 nets (3 significant digits), fp32 densities


def _padded(lin: nn.Linear, context: int, g: torch.Generator) -> nn.Linear:
    """lin's map [mu | log sigma^2] with `context` more outputs, a random linear context h of the same input."""
    out = nn.Linear(lin.in_features, lin.out_features + context).double()
    with torch.no_grad():
        out.weight.copy_(torch.cat([lin.weight, 0.5 * torch.randn(context, lin.in_features, generator=g).double()]))
        out.bias.copy_(torch.cat([lin.bias, 0.5 * torch.randn(context, generator=g).double()]))
    return out


@pytest.mark.parametrize("inference", INFERENCE)
def test_importance_sampled_log_px_with_flows_on_the_true_posterior_stack_converges_to_the_closed_form(inference):
    """The true posterior's networks (Gaussians widened) with random IAFs on each layer: a proposal no longer
    equal to p(z|x), whose importance-sampled log p(x) still converges to the closed form."""
    truth = linear_gaussian_truth()
    exact_model = linear_gaussian_vae(truth, inference)
    cfg = dataclasses.replace(exact_model.config, flow="iaf", flow_steps=2, flow_hidden=(8,), flow_context=3)
    torch.manual_seed(3)
    model = aevb.VAE(cfg).double()
    g = torch.Generator().manual_seed(4)
    model.decoder, model.hierarchy.down[0] = exact_model.decoder, exact_model.hierarchy.down[0]
    model.encoder = _padded(exact_model.encoder, 3, g)
    model.hierarchy.up[0] = _padded(exact_model.hierarchy.up[0], 3, g)
    with torch.no_grad():  # small random flows (each step ~ 0.95 z plus a small shift) on Gaussians wider than the
        # true conditionals, so that the proposal's tails cover p(z|x): importance weights of finite variance
        for flow in (model.flow, *model.hierarchy.flows):
            for made in flow.steps:
                made.layers[-1].weight.mul_(0.05)
                made.layers[-1].bias.mul_(0.05)
                made.layers[-1].bias[flow.dim :] += 1.0  # s_t: sigma_t ~ sigmoid(3)
        for lin, d in ((model.encoder, 3), (model.hierarchy.up[0], 2)):
            lin.bias[d : 2 * d] += 2 * math.log(1.2)
    model.eval()
    x, exact = truth["x"][:6], truth["marginal"].log_prob(truth["x"][:6])
    k = 4000
    lw = log_weights(model, x, k=k, generator=torch.Generator().manual_seed(5))  # (k, 6)
    estimate = torch.logsumexp(lw, 0) - math.log(k)
    w = torch.exp(lw - lw.max(0).values)
    se = (w.std(0) / w.mean(0)) / math.sqrt(k)  # delta method: the standard error of log mean(w)
    assert (lw.std(0) > 0.05).all()  # the flows moved q away from p(z|x): the weights are no longer constant
    assert ((estimate - exact).abs() < 4 * se + 1e-6).all(), (estimate - exact, se)
    assert (lw.mean(0) < exact).all()  # the ELBO is a strict lower bound now


FLOW_STACK = ["--latents", "6", "3", "--flow", "iaf", "--flow-steps", "2", "--hidden", "32", "--seed", "2"]


def _train(out: Path, data_dir: str, *extra) -> list:
    """`aevb train` of a two-layer flow stack on digits (defaults: --flow-hidden 320 320, --flow-context 64)."""
    return ["train", "--dataset", "digits", *FLOW_STACK, "--no-progress", "--data-dir", data_dir, "--out", out, *extra]


@pytest.mark.parametrize("inference", INFERENCE)
def test_a_flow_stack_trains_evaluates_and_resumes_bit_for_bit(tmp_path, shared_data, inference):
    data = str(shared_data)
    whole, part = tmp_path / "whole", tmp_path / "part"
    inf = ["--inference", inference]
    r = aevb_main(tmp_path, _train(whole, data, "--epochs", "2", *inf))
    assert r.returncode == 0, r.stderr
    r = aevb_main(tmp_path, _train(part, data, "--epochs", "1", *inf))
    assert r.returncode == 0, r.stderr
    r = aevb_main(tmp_path, ["train", "--resume", part, "--epochs", "2", "--no-progress", "--data-dir", data])
    assert r.returncode == 0, r.stderr
    assert_bitwise_equal(tensors(whole / "model.safetensors"), tensors(part / "model.safetensors"))
    cfg = json.loads((whole / "config.json").read_text())["model"]
    assert (cfg["latents"], cfg["flow"], cfg["flow_steps"], cfg["inference"]) == ([6, 3], "iaf", 2, inference)
    for f in (p for run in (whole, part) for p in run.rglob("*") if p.is_file()):  # pickle-free: no pickle, no zip
        assert not f.read_bytes()[:2].startswith((b"\x80", b"PK")), f
    model = aevb.load(whole)
    assert model.flow is not None and len(model.hierarchy.flows) == 1
    r = aevb_main(tmp_path, ["eval", whole, "--k", "20", "--seed", "3", "--no-progress", "--data-dir", data])
    assert r.returncode == 0, r.stderr
    ev = json.loads((whole / "eval_test.json").read_text())
    x, _, _ = run_data(model.config, "dynamic", "digits", "test", data_dir=data)
    assert ev["examples"] == x.shape[0] == 300  # the CLI's number is the library's on the same rows and seed
    ll = log_likelihood(model, x, k=20, seed=3)
    assert math.isclose(ev["log_likelihood"], ll.double().mean().item(), rel_tol=0, abs_tol=1e-4)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--gradient", "stl", "--estimator", "mc"], "--gradient stl and dreg need"),
        (["--gradient", "dreg", "--objective", "iwae", "--k", "2"], "--gradient stl and dreg need"),
        (["--free-bits", "0.5"], "--free-bits needs --flow none"),
        (["--prior", "vamp"], "--prior vamp"),
        (["--flow-steps", "0"], "flow_steps must be >= 1"),
    ],
)
def test_bad_combinations_with_a_flow_stack_are_one_line_errors(tmp_path, shared_data, flags, message):
    r = aevb_main(tmp_path, _train(tmp_path / "run", str(shared_data), "--epochs", "1", *flags))
    one_line_error(r, message)
    assert not (tmp_path / "run" / "model.safetensors").exists()
