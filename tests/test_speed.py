"""Speed options change no result beyond tolerance: fused log-likelihood, torch.compile, bf16, fused Adam."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch.distributions import Bernoulli, Independent

import aevb
from aevb import objectives, speed
from aevb.config import from_dict, to_dict
from aevb.evaluate import elbo_terms
from aevb.likelihoods import BernoulliLikelihood
from aevb.objectives import OBJECTIVES, decoder_log_prob, log_weights
from aevb.preprocess import split
from aevb_process import aevb_main


def test_fused_bernoulli_equals_torch_distribution():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(7, 5, 30, generator=g) * 6  # (k, B, D) logits, some saturated
    binary = torch.bernoulli(torch.full((5, 30), 0.4), generator=g)
    grey = torch.rand(5, 30, generator=g)
    for x in (binary, grey):
        ref = Independent(Bernoulli(logits=h, validate_args=False), 1).log_prob(x)
        torch.testing.assert_close(BernoulliLikelihood().log_prob(h, x), ref, rtol=1e-6, atol=1e-4)
    # bf16 logits (autocast) are scored in fp32
    lp = BernoulliLikelihood().log_prob(h.bfloat16(), binary)
    assert lp.dtype == torch.float32
    ref = Independent(Bernoulli(logits=h.bfloat16().float(), validate_args=False), 1).log_prob(binary)
    torch.testing.assert_close(lp, ref, rtol=1e-6, atol=1e-4)


def test_fused_bernoulli_is_fp32_under_bf16_autocast():
    # the log-likelihood of bf16 logits is summed in fp32 even inside autocast, where a matrix
    # product (an einsum for x.h, say) would run, and round its sums of ~800 terms, in bf16
    g = torch.Generator().manual_seed(3)
    h = (torch.randn(3, 5, 784, generator=g) * 4).bfloat16()
    x = torch.bernoulli(torch.full((5, 784), 0.3), generator=g)
    ref = Independent(Bernoulli(logits=h.float(), validate_args=False), 1).log_prob(x)
    with speed.autocast("cpu", "bf16"):
        lp = BernoulliLikelihood().log_prob(h, x)
    assert lp.dtype == torch.float32
    torch.testing.assert_close(lp, ref, rtol=1e-6, atol=1e-3)


def test_binarisation_draw_is_torch_bernoulli_bit_for_bit():
    # speed.bernoulli replaces torch.bernoulli in the trainer: same numbers, same generator state after
    grey = torch.rand(64, 784, generator=torch.Generator().manual_seed(4))
    grey[:, :100] = 0.0  # MNIST's background and saturated pixels
    grey[:, 100:150] = 1.0
    for p in (grey, grey[:, ::2], grey.double()):  # fp32, a strided view, fp64 (torch.bernoulli itself)
        for seed in range(3):
            g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
            for _ in range(2):
                expected, got = torch.bernoulli(p, generator=g1), speed.bernoulli(p, g2)
                assert got.dtype == expected.dtype and torch.equal(got, expected)
            assert torch.equal(torch.randn(5, generator=g1), torch.randn(5, generator=g2))  # same state after
    assert 0.45 < speed.bernoulli(torch.full((10000,), 0.5), torch.Generator().manual_seed(0)).mean() < 0.55


def test_decoder_log_prob_is_decode_log_prob_for_every_head():
    g = torch.Generator().manual_seed(1)
    for name in aevb.LIKELIHOODS:
        torch.manual_seed(0)
        extra = {"categories": 3} if name == "categorical" else {}  # counts and class indices for the discrete heads
        extra = {"columns": "gaussian-learned:4,poisson:4,categorical3:4"} if name == "mixed" else extra
        m = aevb.VAE(aevb.ModelConfig(data_shape=(12,), latent_dim=3, hidden=(8,), likelihood=name, **extra))
        z, x = torch.randn(4, 6, 3, generator=g), torch.rand(6, 12, generator=g)
        x = torch.floor(3 * x) if name in ("poisson", "categorical", "mixed") else x
        with torch.no_grad():
            torch.testing.assert_close(decoder_log_prob(m, z, x), m.decode(z).log_prob(x), rtol=1e-6, atol=1e-4)


def test_log_weights_scored_in_pieces_equal_torch_distributions(monkeypatch):
    # log_weights scores the decoder LOG_WEIGHT_ROWS (sample, example) rows at a time (evaluation
    # speed): the log weights and their gradients are those of one pass through torch.distributions
    torch.manual_seed(0)
    m = aevb.VAE(aevb.ModelConfig(data_shape=(64,), latent_dim=3, hidden=(16,)))
    g = torch.Generator().manual_seed(5)
    x = torch.bernoulli(torch.full((6, 64), 0.3), generator=g)
    eps = torch.randn(50, 6, 3, generator=g)
    q = m.encode(x)
    z = q.base_dist.loc + q.base_dist.scale * eps
    expected = m.decode(z).log_prob(x) + m.prior().log_prob(z) - q.log_prob(z)
    out = {}
    for rows in (10_000, 13):  # one piece; pieces of 2 samples (13 // 6) and a last one
        monkeypatch.setattr(objectives, "LOG_WEIGHT_ROWS", rows)
        m.zero_grad()
        lw = log_weights(m, x, eps=eps)
        lw.logsumexp(0).sum().backward()
        out[rows] = lw.detach(), [p.grad.clone() for p in m.parameters()]
        torch.testing.assert_close(lw, expected, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(out[13][0], out[10_000][0], rtol=0, atol=0)
    for a, b in zip(out[13][1], out[10_000][1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_one_draw_and_the_kl_are_the_numbers_of_their_textbook_forms():
    # the training step scores one draw as a (B, Dz) batch and fuses the KL's "- 2 log sigma": fp32
    # losses and gradients stay bit for bit those of the mean over draws and the formula as written
    torch.manual_seed(0)
    m = aevb.VAE(aevb.ModelConfig(data_shape=(64,), latent_dim=3, hidden=(16,)))
    g = torch.Generator().manual_seed(2)
    x = torch.bernoulli(torch.full((9, 64), 0.3), generator=g)
    eps = torch.randn(1, 9, 3, generator=g)

    def textbook():
        q = m.encode(x)
        mu, sigma = q.base_dist.loc, q.base_dist.scale
        # the KL first, as elbo() asks model.kl(q) before drawing: the order in which autograd sums the
        # KL's and the draw's gradients into sigma is part of the bits
        kl = 0.5 * (mu.square() + sigma.square() - 1.0 - 2.0 * torch.log(sigma)).sum(-1)
        z = mu + sigma * eps  # (1, B, Dz)
        return decoder_log_prob(m, z, x).mean(0) - kl

    out = []
    for f in (textbook, lambda: objectives.elbo(m, x, eps=eps).elbo):
        m.zero_grad()
        value = f()
        value.sum().backward()
        out.append((value.detach(), [p.grad.clone() for p in m.parameters()]))
    assert torch.equal(out[0][0], out[1][0])
    assert all(torch.equal(a, b) for a, b in zip(out[0][1], out[1][1]))


def test_encoder_distribution_is_fp32_under_bf16_autocast():
    # q(z|x)'s parameters leave the bf16 encoder as fp32, and sigma = exp(logvar / 2) is taken in fp32
    torch.manual_seed(0)
    m = aevb.VAE(aevb.ModelConfig(data_shape=(64,), latent_dim=3, hidden=(16,)))
    x = torch.rand(5, 64, generator=torch.Generator().manual_seed(1))
    with speed.autocast("cpu", "bf16"):
        q = m.encode(x)
        out = m.encoder(x)
    assert out.dtype == torch.bfloat16
    mu, logvar = out.float().chunk(2, dim=-1)
    assert q.base_dist.loc.dtype == q.base_dist.scale.dtype == torch.float32
    assert torch.equal(q.base_dist.loc, mu) and torch.equal(q.base_dist.scale, torch.exp(0.5 * logvar))


def _steps(config: aevb.TrainConfig, x: torch.Tensor, steps: int = 6) -> list[float]:
    """Losses of `steps` Adam steps of aevb's objective with the trainer's speed options applied."""
    torch.manual_seed(0)
    model = aevb.VAE(aevb.ModelConfig(data_shape=(64,), latent_dim=2, hidden=(32,)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, **speed.optimizer_options(torch.optim.Adam, x.device))
    objective = speed.objective(OBJECTIVES[config.objective], config)
    g = torch.Generator().manual_seed(0)
    losses = []
    for i in range(steps):
        xb = x[i * 50 : (i + 1) * 50]
        eps = torch.randn((config.samples, xb.shape[0], 2), generator=g)
        loss = -objective(model, xb, config, eps).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module")
def digits():
    ds = aevb.load_dataset("digits")
    return ds, split(ds, "train", "static").reshape(-1, 64)


@pytest.mark.slow
def test_compiled_and_eager_losses_match(digits):
    _, x = digits
    eager = _steps(aevb.TrainConfig(binarize="static"), x)
    compiled = _steps(aevb.TrainConfig(binarize="static", compile="on"), x)
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=1e-5, atol=1e-4)
    assert eager[-1] < eager[0] - 1.0  # it trained: the comparison is not between two constants


@pytest.mark.slow
def test_bf16_training_matches_fp32_on_test_elbo(digits):
    ds, _ = digits
    mc = aevb.ModelConfig(latent_dim=2, hidden=(64,))
    elbos = {}
    for precision in ("fp32", "bf16"):
        tc = aevb.TrainConfig(dataset="digits", epochs=20, precision=precision, binarize="static")
        model = aevb.train(mc, tc, dataset=ds)
        elbos[precision] = elbo_terms(model, split(ds, "test", "static"), samples=10).elbo.mean().item()
    assert elbos["fp32"] > -40  # trained (the untrained model is near -44 nats on digits)
    # stated tolerance: 0.5 nats per example after 20 epochs on digits (bf16 rounds the networks'
    # products to 8 bits of mantissa; densities and KL stay fp32)
    assert abs(elbos["bf16"] - elbos["fp32"]) < 0.5, elbos


def test_speed_fields_are_validated_and_old_configs_load():
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        aevb.TrainConfig(precision="fp16")
    with pytest.raises(ValueError, match="compile must be one of off, on"):
        aevb.TrainConfig(compile="yes")
    d = to_dict(aevb.ModelConfig(), aevb.TrainConfig())
    for f in ("compile", "precision"):
        del d["train"][f]  # a run written before these fields existed
    _, tc = from_dict(json.loads(json.dumps(d)))
    assert (tc.compile, tc.precision) == ("off", "fp32")


def test_fp32_eager_is_untouched_and_adam_is_fused():
    fn = OBJECTIVES["elbo"]
    assert speed.objective(fn, aevb.TrainConfig()) is fn
    assert speed.optimizer_options(torch.optim.Adam, torch.device("cpu")) == {"fused": True}
    assert speed.optimizer_options(lambda params, lr: None, torch.device("cpu")) == {}
    with speed.autocast("cpu", "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with speed.autocast("cpu", "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.slow
def test_cli_train_with_bf16_stores_it_and_rejects_bad_values(tmp_path):
    # in-process (`aevb.cli.main`): a subprocess each spent ~2 s importing torch
    base = ["train", "--dataset", "digits", "--hidden", "16", "--no-progress"]
    bad = aevb_main(tmp_path, [*base, "--precision", "fp8"])
    assert bad.returncode == 2 and "invalid choice: 'fp8'" in bad.stderr and "Traceback" not in bad.stderr
    out = tmp_path / "run"
    ok = aevb_main(tmp_path, [*base, "--epochs", "1", "--precision", "bf16", "--out", str(out)])
    assert ok.returncode == 0, ok.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["precision"] == "bf16" and cfg["train"]["compile"] == "off"
    model = aevb.load(out)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
    assert dataclasses.asdict(model.config)["hidden"] == (16,)
