"""The two-layer linear-Gaussian model with a closed-form log p(x) that hierarchy and gradient tests check against:

    z_2 ~ N(0, I),  z_1 | z_2 ~ N(A z_2 + a, S),  x | z_1 ~ N(B z_1 + b, sigma^2 I)

so x ~ N(B a + b, B (A A^T + S) B^T + sigma^2 I). A is diagonal and B's columns orthogonal, so that the
true posterior is representable by both posteriors: bottom-up p(z_1|x) p(z_2|z_1) (x and z_2 are
independent given z_1) and ladder p(z_2|x) p(z_1|z_2, x) (the precision-weighted product of p(z_1|z_2)
and the likelihood's Gaussian in z_1). The model's networks are replaced by linear maps set to these
posteriors; the ELBO is then exact, and a perturbed posterior gives the IWAE bounds' ordering.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import MultivariateNormal

import aevb
from aevb import ModelConfig

D, D1, D2, SIGMA = 5, 3, 2, 0.5


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0]).double()
    with torch.no_grad():
        lin.weight.copy_(weight)
        lin.bias.copy_(bias)
    return lin


def _gaussian_net(w_mu, b_mu, logvar, inputs: int | None = None) -> nn.Linear:
    """A linear net whose output is [W x + b | logvar]: a Gaussian with a mean linear in its input and a
    constant variance; `inputs` pads W with zero columns (the ladder's [mu^ | log sigma^2] input)."""
    if inputs is not None:
        w_mu = torch.cat([w_mu, torch.zeros(w_mu.shape[0], inputs - w_mu.shape[1], dtype=w_mu.dtype)], 1)
    weight = torch.cat([w_mu, torch.zeros_like(w_mu)])
    return _linear(weight, torch.cat([b_mu, logvar]))


def _diag(m: torch.Tensor) -> torch.Tensor:
    """The diagonal of a matrix that the construction makes diagonal (checked)."""
    assert torch.allclose(m, torch.diag(torch.diag(m)), atol=1e-12)
    return torch.diag(m)


def linear_gaussian_truth() -> dict:
    """The generative parameters and 20 data points x drawn from the model."""
    g = torch.Generator().manual_seed(0)
    dt = torch.float64
    A = torch.zeros(D1, D2, dtype=dt)
    A[0, 0], A[1, 1] = 1.5, -0.8
    a = torch.tensor([0.3, -0.2, 0.5], dtype=dt)
    S = torch.tensor([0.4, 0.7, 1.2], dtype=dt)  # diag of Var(z_1 | z_2)
    Q, _ = torch.linalg.qr(torch.randn(D, D1, generator=g, dtype=dt))
    B = Q * torch.tensor([2.0, 1.0, 0.6], dtype=dt)  # orthogonal columns: B^T B diagonal
    b = torch.randn(D, generator=g, dtype=dt) * 0.3
    marginal = MultivariateNormal(B @ a + b, B @ (A @ A.T + torch.diag(S)) @ B.T + SIGMA**2 * torch.eye(D, dtype=dt))
    x = marginal.sample((20,))
    return dict(A=A, a=a, S=S, B=B, b=b, marginal=marginal, x=x)


def linear_gaussian_vae(t: dict, inference: str) -> aevb.VAE:
    """A VAE with latents (3, 2) whose every network is the linear map of the true model / posterior."""
    cfg = ModelConfig(data_shape=(D,), latents=(D1, D2), inference=inference, likelihood="gaussian", sigma=SIGMA)
    model = aevb.VAE(cfg).double()
    A, a, S, B, b = t["A"], t["a"], t["S"], t["B"], t["b"]
    I2 = torch.eye(D2, dtype=A.dtype)
    model.decoder = _linear(B, b)
    model.hierarchy.down[0] = _gaussian_net(A, a, S.log())
    btb = _diag(B.T @ B)
    if inference == "bottom-up":  # q(z_1|x) = p(z_1|x), q(z_2|z_1) = p(z_2|z_1)
        var1 = 1 / (1 / _diag(A @ A.T + torch.diag(S)) + btb / SIGMA**2)
        w1 = var1[:, None] * B.T / SIGMA**2
        mean1 = var1 * a / _diag(A @ A.T + torch.diag(S))
        model.encoder = _gaussian_net(w1, mean1 - w1 @ b, var1.log())
        var2 = 1 / _diag(I2 + A.T @ torch.diag(1 / S) @ A)
        w2 = var2[:, None] * A.T / S
        model.hierarchy.up[0] = _gaussian_net(w2, -w2 @ a, var2.log())
    else:  # bottom-up Gaussians: the likelihood's in z_1, N(m(x), R), and p(z_2|x) from m(x)
        R = SIGMA**2 / btb
        w1 = B.T / btb[:, None]
        model.encoder = _gaussian_net(w1, -w1 @ b, R.log())
        var2 = 1 / _diag(I2 + A.T @ torch.diag(1 / (S + R)) @ A)
        w2 = var2[:, None] * A.T / (S + R)
        model.hierarchy.up[0] = _gaussian_net(w2, -w2 @ a, var2.log(), inputs=2 * D1)
    return model.eval()


def perturbed(model: aevb.VAE) -> aevb.VAE:
    """The same model with a worse posterior: shifted means and wider variances of z_1."""
    with torch.no_grad():
        model.encoder.bias[:D1] += 0.4
        model.encoder.bias[D1:] += 0.8
    return model


INFERENCE = ["bottom-up", "ladder"]


def random_stack(inference: str, latents=(3, 2, 2), flow: str = "none", seed: int = 0) -> aevb.VAE:
    """Not linear-Gaussian: a small stack of `latents` on 5-D Gaussian data with random nonlinear nets (torch's
    initialisation under `seed`), in float64, for the checks that need no closed-form p(x); `flow` "iaf" puts
    a two-step IAF on every layer."""
    cfg = ModelConfig(
        data_shape=(5,),
        hidden=(7,),
        latents=latents,
        latent_hidden=(6,),
        inference=inference,
        likelihood="gaussian",
        flow=flow,
        flow_steps=2,
        flow_hidden=(9,),
        flow_context=3,
    )
    torch.manual_seed(seed)
    return aevb.VAE(cfg).double().eval()
