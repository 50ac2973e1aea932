"""`aevb.nets` in the model: convolutional networks for any image size, the residual MLP, which learn
digits, and the weight initialisations against their definitions."""

import math

import pytest
import torch
from torch import nn

import aevb
from aevb import VAE, ModelConfig, TrainConfig
from aevb.preprocess import split


def _x(digits, name="test"):
    return split(digits, name, "dynamic")


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


@pytest.mark.slow
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
