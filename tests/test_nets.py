"""Weight initialisations of aevb.nets against their definitions."""

import math

import pytest
import torch
from torch import nn

import aevb


def test_glorot_init_is_uniform_with_the_fan_scaled_bound_and_zero_biases():
    # Glorot & Bengio (2010): W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)), so Var W = 2 / (fan_in + fan_out)
    torch.manual_seed(0)
    model = aevb.VAE(aevb.ModelConfig(data_shape=(28, 28), hidden=(200, 200), latent_dim=50, init="glorot"))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 6
    for layer in linears:
        fan_out, fan_in = layer.weight.shape
        a = math.sqrt(6 / (fan_in + fan_out))
        w = layer.weight.detach()
        assert w.abs().max() <= a and w.abs().max() > 0.98 * a
        assert w.var().item() == pytest.approx(2 / (fan_in + fan_out), rel=0.1 if w.numel() > 5000 else 0.25)
        assert torch.equal(layer.bias.detach(), torch.zeros_like(layer.bias))
    default = aevb.VAE(aevb.ModelConfig(data_shape=(28, 28), hidden=(200, 200), latent_dim=50))
    assert not torch.equal(default.encoder.net[0].bias, torch.zeros_like(default.encoder.net[0].bias))
