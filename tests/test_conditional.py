"""The conditional VAE (`--condition-on labels`, Sohn et al. 2015) against ground truth: log p(x|y) by
quadrature on a 1-D latent, the model as a generative classifier of real digits, class-specific
samples checked by a classifier trained on the real data, exact resume, and the CLI end to end."""

import math

import numpy as np
import pytest
import torch

import aevb
from aevb import VAE, ModelConfig, TrainConfig, log_likelihood
from aevb.config import from_dict, to_dict
from aevb.evaluate import elbo_terms
from aevb.objectives import elbo, log_weights
from aevb.preprocess import split
from aevb_process import aevb_main


@pytest.fixture(scope="module")
def cond(digits):
    """A conditional 64-8 VAE trained on digits (60 epochs)."""
    return aevb.train(
        ModelConfig(latent_dim=8, hidden=(64,), condition_on="labels"), TrainConfig(epochs=60), dataset=digits
    )


@pytest.fixture(scope="module")
def classifier(digits):
    """A logistic regression on the real digits' grey levels: the judge of class-specific samples."""
    from sklearn.linear_model import LogisticRegression

    x = torch.cat([digits.train, digits.valid]).reshape(-1, 64).numpy()
    y = torch.cat([digits.train_labels, digits.valid_labels]).numpy()
    clf = LogisticRegression(max_iter=2000).fit(x, y)
    test_acc = clf.score(digits.test.reshape(-1, 64).numpy(), digits.test_labels.numpy())
    assert test_acc > 0.9  # a judge worth trusting
    return clf


@pytest.mark.slow
def test_label_classes_are_resolved_from_the_data_and_stored(cond):
    assert cond.config.conditional and cond.config.classes == 10  # digits 0..9
    m, t = from_dict(to_dict(cond.config, TrainConfig()))
    assert m == cond.config


def test_log_p_x_given_y_matches_quadrature_on_a_1d_latent():
    """log p(x|y) = log int p(x|z, y) N(z; 0, 1) dz on a fine grid, against the importance-sampled estimate
    (k = 5000) and the ELBO below it; and p(x|y) differs between labels, so y reaches the decoder."""
    torch.manual_seed(0)
    model = VAE(ModelConfig(data_shape=(6,), latent_dim=1, hidden=(16,), condition_on="labels", classes=3))
    with torch.no_grad():  # the decoder's first layer, inputs [z, one-hot y]: large enough for y to matter
        model.decoder.net[0].weight.mul_(4)
    x = torch.bernoulli(torch.full((4, 6), 0.4), generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 1])
    z = torch.linspace(-10, 10, 20001).unsqueeze(1)  # (G, 1)
    with torch.no_grad():
        exact = []
        for i in range(4):
            log_joint = (
                model.decode(z, y[i].expand(len(z))).log_prob(x[i]) - 0.5 * z[:, 0] ** 2 - 0.5 * math.log(2 * math.pi)
            )
            exact.append(torch.logsumexp(log_joint, 0) + math.log(z[1, 0] - z[0, 0]))
        exact = torch.stack(exact)
        other = (y + 1) % 3
        exact_other = torch.stack(
            [
                torch.logsumexp(model.decode(z, other[i].expand(len(z))).log_prob(x[i]) - 0.5 * z[:, 0] ** 2, 0)
                + math.log(z[1, 0] - z[0, 0])
                - 0.5 * math.log(2 * math.pi)
                for i in range(4)
            ]
        )
    ll = log_likelihood(model, x, k=5000, y=y)
    assert torch.allclose(ll, exact, atol=0.02), (ll, exact)
    assert (elbo_terms(model, x, samples=5000, y=y).elbo <= exact + 0.02).all()
    assert (exact - exact_other).abs().max() > 0.05  # the label changes the density
    assert torch.allclose(log_likelihood(model, x, k=5000, y=other), exact_other, atol=0.02)


def test_conditional_model_needs_labels_and_an_unconditional_one_ignores_them():
    cond = VAE(ModelConfig(data_shape=(5,), latent_dim=2, hidden=(8,), condition_on="labels", classes=4))
    x = torch.rand(3, 5).round()
    with pytest.raises(ValueError, match="conditioned on labels"):
        elbo(cond, x)
    plain = VAE(ModelConfig(data_shape=(5,), latent_dim=2, hidden=(8,)))
    eps = torch.randn(7, 3, 2)
    assert torch.equal(log_weights(plain, x, eps=eps), log_weights(plain, x, eps=eps, y=torch.tensor([0, 1, 2])))
    with pytest.raises(ValueError, match="vamp"):
        ModelConfig(condition_on="labels", prior="vamp")


@pytest.mark.slow
def test_the_conditional_vae_is_a_generative_classifier_of_digits(cond, digits):
    """With p(y) uniform, p(y|x) = p(x|y) / sum_c p(x|c): argmax_y of the importance-sampled log p(x|y)
    must recover the test digits' labels, and the label must carry information,
    E[log p(y|x) - log p(y)] > 1 nat (its maximum is log 10 = 2.30)."""
    x, y = split(digits, "test", "dynamic"), digits.test_labels
    ll = torch.stack([log_likelihood(cond, x, k=100, y=torch.full_like(y, c)) for c in range(10)], 1)  # (N, 10)
    assert (ll.argmax(1) == y).float().mean() > 0.8  # 0.88 with seeds 0 and 1
    info = (ll.gather(1, y[:, None]).squeeze(1) - ll.logsumexp(1) + math.log(10)).mean()
    assert 1.0 < info <= math.log(10), info  # 1.9 with seeds 0 and 1


@pytest.mark.slow
def test_samples_of_one_class_are_recognised_as_that_class(cond, classifier):
    g = torch.Generator().manual_seed(0)
    for label in (0, 3, 7):
        x = cond.sample(200, g, y=torch.full((200,), label)).reshape(200, 64).numpy()
        acc = (classifier.predict(x) == label).mean()
        assert acc > 0.8, (label, acc)


@pytest.mark.slow
def test_conditional_resume_is_exact(tmp_path, digits):
    m = ModelConfig(latent_dim=4, hidden=(32,), condition_on="labels")
    full = aevb.train(m, TrainConfig(epochs=3, seed=1), dataset=digits)
    aevb.train(m, TrainConfig(epochs=2, seed=1, checkpoint_every=5), tmp_path / "r", dataset=digits)
    resumed = aevb.train(None, TrainConfig(epochs=3, checkpoint_every=5), tmp_path / "r", resume=True, dataset=digits)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def _aevb(*args, cwd):
    """`aevb ...` through `aevb.cli.main` in this process (a subprocess each spent ~2 s importing torch)."""
    return aevb_main(cwd, list(args))


@pytest.mark.slow
def test_cli_conditional_run_end_to_end(tmp_path, classifier):
    r = _aevb(
        "train",
        "--condition-on",
        "labels",
        "--epochs",
        "60",
        "--hidden",
        "64",
        "--latent-dim",
        "8",
        "--out",
        "run",
        "--no-progress",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    r = _aevb("sample", "run", "--label", "4", "--n", "100", "--out", "s.npy", cwd=tmp_path)
    assert r.returncode == 0 and "of class 4" in r.stdout, r.stderr
    x = np.load(tmp_path / "s.npy", allow_pickle=False)
    assert x.shape == (100, 64) and (classifier.predict(x) == 4).mean() > 0.8
    r = _aevb("eval", "run", "--k", "50", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0 and "log p(x | y)" in r.stdout, r.stderr
    for args in (
        ("reconstruct", "run"),
        ("traverse", "run", "--label", "2"),
        ("sample", "run", "--from", "aggregate", "--label", "1"),
        ("report", "run", "--k", "10"),
    ):
        r = _aevb(*args, cwd=tmp_path)
        assert r.returncode == 0, (args, r.stderr)
    for args, message in (
        (("sample", "run", "--label", "10"), "--label 10 is out of range: the run knows the classes 0..9"),
        (
            (
                "train",
                "--condition-on",
                "labels",
                "--dataset",
                "frey-face",
                "--epochs",
                "1",
                "--out",
                "f",
                "--data-dir",
                tmp_path / "none",
            ),
            None,
        ),
    ):
        r = _aevb(*args, cwd=tmp_path)
        assert r.returncode != 0 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        if message:
            assert message in r.stderr, r.stderr
    assert not (tmp_path / "f").exists()


@pytest.mark.slow
def test_label_flag_on_an_unconditional_run_is_one_line(tmp_path, digits):
    aevb.train(ModelConfig(), TrainConfig(epochs=1), tmp_path / "plain", dataset=digits)
    r = _aevb("sample", "plain", "--label", "3", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr == (
        "aevb: error: --label needs a conditional run (one trained with --condition-on labels)\n"
    )


@pytest.mark.slow
def test_interpolation_ends_are_each_inputs_reconstruction_under_its_own_label(cond, digits):
    from aevb.sampling import decode_mean, interpolate, posterior_means

    x, y = split(digits, "test", "dynamic")[:2], digits.test_labels[:2]
    assert y[0] != y[1]
    z, xs = interpolate(cond, x[0], x[1], steps=5, y=y)
    recon = decode_mean(cond, posterior_means(cond, x, y=y), y)  # each input under its own label
    assert torch.allclose(xs[0], recon[0], atol=1e-6) and torch.allclose(xs[-1], recon[1], atol=1e-6)
    assert not torch.allclose(decode_mean(cond, z[:1], y[1:]), xs[:1], atol=1e-3)  # the label matters
