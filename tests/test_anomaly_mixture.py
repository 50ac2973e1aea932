"""The latent mixture density of `aevb.anomaly.mixture` against ground truth: its log density against
torch.distributions' mixture of multivariate normals and against scikit-learn's GaussianMixture, the packed layout,
and the "latent-gmm" score of a fitted detector against a mixture fitted by hand to its training codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

import aevb
from aevb.anomaly import mixture as mixture_module
from aevb.anomaly.mixture import REGULARISATION, dimension, fit_mixture, log_density, pack, unpack
from test_anomaly_scores import TINY


def _random_mixture(k: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights (k,), means (k, d) and upper-triangular precision factors U (k, d, d) with a positive diagonal."""
    g = torch.Generator().manual_seed(seed)
    weights = torch.rand(k, generator=g, dtype=torch.float64) + 0.1
    means = torch.randn(k, d, generator=g, dtype=torch.float64) * 3
    factors = torch.triu(torch.randn(k, d, d, generator=g, dtype=torch.float64), diagonal=1)
    factors += torch.diag_embed(torch.rand(k, d, generator=g, dtype=torch.float64) + 0.5)
    return weights / weights.sum(), means, factors


def test_the_log_density_is_torch_distributions_mixture_of_normals(monkeypatch):
    for k, d in ((1, 1), (3, 2), (5, 4)):
        weights, means, factors = _random_mixture(k, d, seed=k)
        packed = pack(weights, means, factors)
        assert packed.shape == (k, 1 + d + d * d) and packed.dtype == torch.float64
        codes = torch.randn(50, d, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 4
        truth = torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(probs=weights),
            torch.distributions.MultivariateNormal(means, precision_matrix=factors @ factors.transpose(1, 2)),
        ).log_prob(codes)
        np.testing.assert_allclose(log_density(packed, codes).numpy(), truth.numpy(), rtol=1e-10, atol=1e-10)
        back = unpack(packed)
        torch.testing.assert_close(back[0].exp(), weights, rtol=1e-15, atol=0)
        assert torch.equal(back[1], means) and torch.equal(back[2], factors)
        # chunks of rows do not change a number
        whole = log_density(packed, codes)
        monkeypatch.setattr(mixture_module, "_CHUNK", 7 * k * d * d)  # 7 rows per chunk
        assert torch.equal(log_density(packed, codes), whole)
        assert torch.equal(log_density(packed, codes[3:4]), whole[3:4])
        monkeypatch.undo()
    assert log_density(packed, codes[:0]).shape == (0,)


def test_a_fitted_mixture_has_scikit_learns_density():
    """fit_mixture is scikit-learn's GaussianMixture (full covariances, the regularisation, the seed); the packed
    tensor scores as its score_samples does, without it. Fewer rows than components: one component a row."""
    g = np.random.default_rng(3)
    reference = np.concatenate([g.normal(0, 0.3, (150, 3)), g.normal(4, 1.0, (100, 3)) * [1, 2, 0.5]])
    codes = g.normal(1, 3, (40, 3))
    for components, seed in ((1, 0), (4, 2)):
        packed = fit_mixture(torch.from_numpy(reference).float(), components, seed)
        truth = GaussianMixture(components, covariance_type="full", reg_covar=REGULARISATION, random_state=seed)
        truth.fit(reference.astype(np.float32).astype(np.float64))
        assert packed.shape == (components, 1 + 3 + 9)
        np.testing.assert_allclose(
            log_density(packed, torch.from_numpy(codes)).numpy(), truth.score_samples(codes), rtol=1e-9, atol=1e-9
        )
    # a point between the two clusters is less probable than one in the tight cluster
    two = fit_mixture(torch.from_numpy(reference).float(), 2, 0)
    between, inside = log_density(two, torch.tensor([[2.0, 2.0, 2.0], [0.0, 0.0, 0.0]], dtype=torch.float64))
    assert inside > between + 5
    assert fit_mixture(torch.from_numpy(reference[:3]).float(), 20, 0).shape[0] == 3


def test_the_packed_width_names_its_dimension():
    for d in (1, 2, 16):
        assert dimension(1 + d + d * d) == d
    for width in (0, 1, 2, 4, 22):
        with pytest.raises(ValueError, match="not 1 \\+ D \\+ D \\* D"):
            dimension(width)


def test_the_latent_gmm_score_of_a_detector_is_the_mixture_of_its_training_codes(images, tmp_path):
    """score="latent-gmm": the log density of E[z|x] under a 20-component mixture fitted by scikit-learn to the
    training rows' posterior means with the detector's random_state; the training rows' own scores in-sample; saved
    and loaded bit for bit."""
    x, x_test = images
    det = aevb.AnomalyDetector(score="latent-gmm", random_state=4, **TINY).fit(x)
    assert det.latent_mixture_.shape == (20, 1 + 2 + 4) and det.latent_density_ is None
    train_codes = det.latent_reference_.double().numpy()
    truth = GaussianMixture(20, covariance_type="full", reg_covar=REGULARISATION, random_state=4).fit(train_codes)
    np.testing.assert_allclose(det.train_scores_, truth.score_samples(train_codes), rtol=1e-8, atol=1e-8)
    test_codes = det.model_.encode(det._tensor(x_test)).mean.double().detach().numpy()
    np.testing.assert_allclose(det.score_samples(x_test), truth.score_samples(test_codes), rtol=1e-6, atol=1e-6)
    det.save(tmp_path / "g")
    back = aevb.AnomalyDetector.load(tmp_path / "g")
    assert torch.equal(back.latent_mixture_, det.latent_mixture_)
    np.testing.assert_array_equal(back.score_samples(x_test), det.score_samples(x_test))
