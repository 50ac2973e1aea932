"""`aevb.config`: configs written before the variants existed load with defaults that are today's model."""

import torch

from aevb import VAE, ModelConfig, TrainConfig
from aevb.config import from_dict, to_dict

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
