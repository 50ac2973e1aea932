"""stl and dreg (aevb.gradients) for a stack of latent layers (aevb.hierarchy), against ground truth on the
two-layer linear-Gaussian model of test_hierarchy (closed-form log p(x), a posterior the stacks hold exactly):

- `q.detached().log_prob` has the numbers of `q.log_prob`, its z-gradient (parents included) and no
  parameter gradient; the stl draw's parameter gradient is autograd's total derivative of log q(z(phi))
  minus its score term;
- DReG has the standard IWAE gradient's mean for every net (the ladder's shared `down` nets included) and
  a lower variance; STL is unbiased for the ELBO; both are exactly zero per draw at the true posterior;
- `aevb train --latents 8 4 --gradient dreg --objective iwae` trains and resumes bit for bit."""

from __future__ import annotations

import math

import pytest
import torch

import aevb
from aevb.gradients import draw
from aevb.objectives import elbo, iwae
from aevb_process import aevb_main, assert_bitwise_equal, metrics, one_line_error, tensors
from compiled_dreg import assert_dreg_compiled_equals_eager
from linear_gaussian import D1, D2, INFERENCE, D, linear_gaussian_truth, linear_gaussian_vae, perturbed


@pytest.fixture(scope="module")
def truth():
    """test_hierarchy's two-layer model: its parameters, closed-form marginal and 20 points drawn from it."""
    return linear_gaussian_truth()


NETS = {  # the linear nets of linear_gaussian_vae, by name
    "encoder": lambda m: m.encoder,
    "up": lambda m: m.hierarchy.up[0],
    "down": lambda m: m.hierarchy.down[0],
    "decoder": lambda m: m.decoder,
}


def worse(model: aevb.VAE) -> aevb.VAE:
    """`perturbed` (q(z_1|x) shifted and wider), and q's top layer shifted and wider too, so that every net of
    q has a non-zero expected gradient for the estimators to agree on."""
    with torch.no_grad():
        model.hierarchy.up[0].bias[:D2] += 0.3
        model.hierarchy.up[0].bias[D2:] += 0.6
    return perturbed(model)


def per_row_gradients(model, x0, k, repeats, gradient, objective="iwae", seed=0) -> dict[str, torch.Tensor]:
    """The gradient of each row's objective at x0 with respect to each net's [weight | bias], by net name,
    (repeats, out * (in + 1)); one independent draw of the k noises per row. Rows are independent, so the
    gradient of the sum splits by row: row r's is the sum over the net's calls of g_r (x) input_r, from
    hooks on the nets' outputs (checked against the summed .grad)."""
    eps = torch.randn(k, repeats, D1 + D2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = x0.expand(repeats, D)
    calls = {name: [] for name in NETS}

    def keep(name):
        def hook(module, inputs, out):
            if module.weight.requires_grad:  # a `frozen` pass (detached parameters) gives the parameters nothing
                out.retain_grad()
                calls[name].append((inputs[0], out))

        return hook

    handles = [get(model).register_forward_hook(keep(name)) for name, get in NETS.items()]
    try:
        model.zero_grad()
        if objective == "iwae":
            value = iwae(model, x, k, eps=eps, gradient=gradient)
        else:
            value = elbo(model, x, samples=k, estimator="mc", eps=eps, gradient=gradient).elbo
        value.sum().backward()
    finally:
        for h in handles:
            h.remove()
    grads = {}
    for name, seen in calls.items():
        total = 0.0
        for inp, out in seen:
            g = out.grad.reshape(-1, repeats, out.shape[-1])  # (n, R, out)
            a = inp.expand(*out.shape[:-1], inp.shape[-1]).reshape(-1, repeats, inp.shape[-1])  # (n, R, in)
            total = total + torch.cat([torch.einsum("nro,nri->roi", g, a).flatten(1), g.sum(0)], 1)
        net = NETS[name](model)
        torch.testing.assert_close(total.sum(0), torch.cat([net.weight.grad.flatten(), net.bias.grad]), msg=name)
        grads[name] = total.detach()
    return grads


def z_scores(d) -> torch.Tensor:
    """|mean(d)| / its standard error per component, (C,); 0 where d is the same in every row."""
    se = d.std(0) / math.sqrt(d.shape[0])
    return torch.where(se > 0, d.mean(0).abs() / se, torch.zeros_like(se))


def paired_z(a, b) -> float:
    """max over components of |mean(a - b)| / its standard error: the same noise, so the pairs' differences."""
    return z_scores(a - b).max().item()


def resolved(a) -> float:
    """max over components of |mean(a)| / its standard error."""
    return z_scores(a).max().item()


def q_nets(inference: str) -> tuple[str, ...]:
    """The nets whose parameters q's density reads (phi, hierarchy's docstring)."""
    return ("encoder", "up") if inference == "bottom-up" else ("encoder", "up", "down")


def check_detached(q, eps: torch.Tensor, params: list[torch.Tensor]) -> None:
    """The stl / dreg draw of q from eps against the standard one and autograd (this module's docstring)."""
    z, lq = draw(q, eps, "standard")
    for gradient in ("stl", "dreg"):  # the same z and log q(z|x) for the same noise
        zg, lqg = draw(q, eps, gradient)
        assert torch.equal(zg, z) and torch.equal(lqg, lq), gradient
    # log q of a given z: the parameters cut, z's gradient (through each layer and its parent) kept
    leaf = z.detach().requires_grad_()
    cut = q.detached().log_prob(leaf)
    torch.testing.assert_close(cut, q.log_prob(leaf), atol=1e-12, rtol=0)
    assert all(g is None for g in torch.autograd.grad(cut.sum(), params, allow_unused=True, retain_graph=True))
    (want,) = torch.autograd.grad(q.log_prob(leaf).sum(), leaf)
    torch.testing.assert_close(torch.autograd.grad(cut.sum(), leaf)[0], want, atol=1e-12, rtol=0)
    # along the draw: the total derivative of log q(z(phi)|x) minus the score term d log q(z|x)/dphi at fixed z
    total = torch.autograd.grad(lq.sum(), params, retain_graph=True)
    score = torch.autograd.grad(q.log_prob(z.detach()).sum(), params, retain_graph=True)
    path = torch.autograd.grad(draw(q, eps, "stl")[1].sum(), params)
    for p, t, s in zip(path, total, score):
        torch.testing.assert_close(p, t - s, atol=1e-10, rtol=1e-10)
    assert min((t - s).abs().max() for t, s in zip(total, score)) > 1e-3  # every net has a score term to cut


@pytest.mark.parametrize("inference", INFERENCE)
def test_detached_scores_the_same_numbers_with_only_the_path_gradient(truth, inference):
    model = worse(linear_gaussian_vae(truth, inference))
    eps = torch.randn(4, 20, D1 + D2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    params = [p for name in q_nets(inference) for p in NETS[name](model).parameters()]
    check_detached(model.encode(truth["x"]), eps, params)


@pytest.mark.parametrize("inference", INFERENCE)
def test_detached_through_nonlinear_nets_of_three_layers(inference):
    # MLPs with tanh between three layers: the frozen nets are the same functions of their inputs
    torch.manual_seed(0)
    cfg = aevb.ModelConfig(data_shape=(12,), latents=(4, 3, 2), latent_hidden=(8,), hidden=(16,), inference=inference)
    model = aevb.VAE(cfg).double()
    x = torch.rand(6, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64).bernoulli()
    eps = torch.randn(5, 6, 9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    params = [*model.encoder.parameters(), *model.hierarchy.up.parameters()]
    if inference == "ladder":
        params += [*model.hierarchy.down.parameters()]
    check_detached(model.encode(x), eps, params)


@pytest.mark.parametrize("inference", INFERENCE)
@pytest.mark.parametrize("gradient", ["stl", "dreg"])
def test_q_gets_a_zero_gradient_per_draw_at_the_true_posterior(truth, inference, gradient):
    # every log-weight is log p(x) whatever z: STL and DReG stick the landing; the standard estimator keeps
    # its score term, zero only in expectation
    model = linear_gaussian_vae(truth, inference)
    got = per_row_gradients(model, truth["x"][2], 5, 200, gradient)
    standard = per_row_gradients(model, truth["x"][2], 5, 200, "standard")
    for name in ("encoder", "up"):  # the ladder's down nets are theta too: log p's own term remains
        assert got[name].abs().max() < 1e-10, name
        assert standard[name].abs().max() > 0.1, name


@pytest.mark.parametrize("inference", INFERENCE)
def test_dreg_has_the_standard_mean_and_a_lower_variance(truth, inference):
    model = worse(linear_gaussian_vae(truth, inference))
    standard = per_row_gradients(model, truth["x"][0], 5, 20000, "standard")
    dreg = per_row_gradients(model, truth["x"][0], 5, 20000, "dreg")
    for name in NETS:  # unbiased for every parameter, the ladder's shared down nets included
        assert paired_z(dreg[name], standard[name]) < 4.0, name
        assert resolved(standard[name]) > 5.0, name  # the agreement means something: a non-zero mean, resolved
    for name in ("encoder", "up"):  # measured: 0.14 to 0.19 of the standard variance
        assert dreg[name].var(0).sum() < 0.4 * standard[name].var(0).sum(), name
    if inference == "ladder":  # its down nets are mostly theta: about the standard variance (1.13 measured)
        assert dreg["down"].var(0).sum() < 1.5 * standard["down"].var(0).sum()
    # the nets off z's path (the decoder; bottom-up's down nets) get the standard gradient, bit for bit
    for name in ("down", "decoder") if inference == "bottom-up" else ("decoder",):
        assert torch.equal(dreg[name], standard[name]), name
    # and the test sees a bias where there is one: STL at k = 5 (Tucker et al. 2019, Section 4)
    stl = per_row_gradients(model, truth["x"][0], 5, 20000, "stl")
    assert min(paired_z(stl[name], standard[name]) for name in q_nets(inference)) > 8.0


@pytest.mark.parametrize("inference", INFERENCE)
def test_stl_is_unbiased_for_the_elbo_with_a_lower_variance(truth, inference):
    model = worse(linear_gaussian_vae(truth, inference))
    standard = per_row_gradients(model, truth["x"][1], 1, 20000, "standard", "elbo")
    stl = per_row_gradients(model, truth["x"][1], 1, 20000, "stl", "elbo")
    for name in NETS:
        assert paired_z(stl[name], standard[name]) < 4.0, name
    for name in q_nets(inference):  # measured: 0.25 to 0.36 of the standard variance; the ladder's down 0.94
        assert resolved(standard[name]) > 5.0, name
        assert stl[name].var(0).sum() < (0.6 if name != "down" else 1.2) * standard[name].var(0).sum(), name


def test_cli_dreg_on_a_stack_trains_and_resumes_bit_for_bit(tmp_path):
    flags = ["--latents", "8", "4", "--hidden", "32", "--gradient", "dreg", "--objective", "iwae", "--k", "5"]
    flags += ["--seed", "2", "--no-progress"]
    r = aevb_main(tmp_path, ["train", *flags, "--epochs", "2", "--out", "whole"])
    assert r.returncode == 0, r.stderr
    r = aevb_main(tmp_path, ["train", *flags, "--epochs", "1", "--out", "part"])
    assert r.returncode == 0, r.stderr
    r = aevb_main(tmp_path, ["train", "--resume", "part", "--epochs", "2", "--no-progress"])
    assert r.returncode == 0, r.stderr
    assert_bitwise_equal(
        tensors(tmp_path / "whole" / "model.safetensors"), tensors(tmp_path / "part" / "model.safetensors")
    )
    records = metrics(tmp_path / "part")
    assert [m["epoch"] for m in records] == [1, 2]
    assert [m["valid_elbo"] for m in records] == [m["valid_elbo"] for m in metrics(tmp_path / "whole")]
    assert records[1]["valid_elbo"] > records[0]["valid_elbo"] + 1.0  # it learns (about 3 nats on this seed)


def test_a_flow_posterior_is_refused_in_one_line(tmp_path):
    flags = ["--flow", "iaf", "--gradient", "dreg", "--objective", "iwae", "--epochs", "1", "--out", "run"]
    r = aevb_main(tmp_path, ["train", *flags, "--no-progress"])
    one_line_error(r, "q.detached()", "FlowPosterior has none", "inverse", "use --gradient standard")


@pytest.mark.slow
def test_dreg_on_a_stack_under_torch_compile_equals_eager():
    # the frozen nets (torch.func.functional_call) and the hook on z survive compilation, for both posteriors;
    # Dynamo and AOTAutograd only (inductor's C++ code generation took 56 s cold here, and test_gradients runs
    # the one-layer DReG objective through it)
    for inference in INFERENCE:
        torch.manual_seed(0)
        cfg = aevb.ModelConfig(data_shape=(12,), latents=(3, 2), latent_hidden=(8,), hidden=(16,), inference=inference)
        model = aevb.VAE(cfg)
        x = torch.rand(8, 12, generator=torch.Generator().manual_seed(1)).bernoulli()
        eps = torch.randn(5, 8, 5, generator=torch.Generator().manual_seed(2))
        assert_dreg_compiled_equals_eager(model, x, eps, backend="aot_eager")
