"""aevb.anomaly.fitting and aevb.anomaly.scaling: the detector's fit is exactly `fit_vae` on the rescaled
rows, `fit_vae` is reproducible and leaves the caller's RNG alone, the size rule takes the given entries,
and `transform` centres, scales and clips only the location-scale columns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import aevb
from aevb.anomaly.columns import rescaled_kinds, rescaled_mask
from aevb.anomaly.fitting import chosen_size, default_size, fit_vae, model_config
from aevb.anomaly.scaling import CLIP, fit_scaler, transform
from aevb.likelihoods import LIKELIHOODS, column_kinds, make_likelihood

SIZE = {"hidden": (8,), "latent_dim": 2, "batch_size": 32, "epochs": 2}


def _rows(n: int = 120, seed: int = 0) -> np.ndarray:
    """Three real columns (the middle one with extreme values) and one count column."""
    rng = np.random.default_rng(seed)
    a = np.c_[rng.normal(5, 2, (n, 3)), rng.poisson(3, n)].astype(np.float64)
    a[:4, 1] = [1e4, -1e4, 300.0, -300.0]
    return a


def test_chosen_size_is_the_rule_with_the_given_entries_in_place():
    params = {"hidden": [16, 8], "latent_dim": None, "batch_size": None, "epochs": 7, "lr": 0.1}
    assert chosen_size(500, 6, params) == {**default_size(500, 6), "hidden": (16, 8), "epochs": 7}
    assert chosen_size(500, 6, {}) == default_size(500, 6)


def test_model_config_names_the_detectors_likelihood_and_size():
    c = model_config(4, SIZE, "mixed", "gaussian-robust:3,poisson:1", -3.0, 0.1)
    assert (c.data_shape, c.latent_dim, c.hidden, c.activation) == ((4,), 2, (8,), "relu")
    assert (c.likelihood, c.columns) == ("mixed", "gaussian-robust:3,poisson:1")
    assert (c.logvar_min, c.outlier_weight) == (-3.0, 0.1)
    assert model_config(4, SIZE, "gaussian", None, -4.0, 0.2).columns == ""


def test_fit_vae_is_reproducible_and_leaves_the_global_rng_alone():
    x = torch.from_numpy(np.ascontiguousarray(_rows()[:, :3], dtype=np.float32)) / 100
    config = model_config(3, SIZE, "gaussian-learned", None, -4.0, 0.2)
    before = torch.get_rng_state()
    a = fit_vae(x, config, SIZE, 1e-3, seed=5)
    assert torch.equal(torch.get_rng_state(), before)
    b, c = fit_vae(x, config, SIZE, 1e-3, seed=5), fit_vae(x, config, SIZE, 1e-3, seed=6)
    assert not a.training
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))
    # the initialisation is VAE(config) under torch.manual_seed(seed), and training moved it
    torch.manual_seed(5)
    init = aevb.VAE(config)
    torch.set_rng_state(before)
    assert all(p.shape == q.shape for p, q in zip(init.parameters(), a.parameters()))
    assert any(not torch.equal(p, q) for p, q in zip(init.parameters(), a.parameters()))


def test_the_detector_fits_exactly_fit_vae_on_its_rescaled_rows():
    a = _rows()
    kw = {
        "likelihood": "mixed",
        "columns": "gaussian-robust:3,poisson:1",
        "refits": 0,
        "random_state": 2,
        "n_samples": 2,
    }
    det = aevb.AnomalyDetector(**kw, **SIZE).fit(a)
    mask = rescaled_mask("mixed", kw["columns"], 4)
    x = torch.from_numpy(np.ascontiguousarray(transform(det.scaler_, a, mask), dtype=np.float32))
    config = model_config(4, det.size_, "mixed", kw["columns"], det.logvar_min, det.outlier_weight)
    expected = fit_vae(x, config, det.size_, det.lr, det.random_state)
    for (name, p), q in zip(expected.state_dict().items(), det.model_.state_dict().values()):
        assert torch.equal(p, q), name


def test_transform_centres_scales_and_clips_only_the_rescaled_columns():
    a = _rows()
    mask = np.array([True, True, True, False])
    out = transform(fit_scaler(a, "robust", mask), a, mask)
    q1, median, q3 = np.percentile(a[:, :3], [25, 50, 75], axis=0)
    np.testing.assert_allclose(out[:, :3], np.clip((a[:, :3] - median) / (q3 - q1), -CLIP, CLIP))
    assert out[0, 1] == CLIP and out[1, 1] == -CLIP and CLIP == 50.0
    assert np.array_equal(out[:, 3], a[:, 3])  # counts as they are
    assert np.array_equal(a, _rows())  # the input is not changed


def test_the_rescaled_kinds_are_the_kinds_whose_heads_are_location_scale():
    kinds = {k: "categorical3:1" if k == "categorical" else f"{k}:1" for k in column_kinds()}
    for kind, spec in kinds.items():
        assert bool(rescaled_mask("mixed", spec, 1)[0]) == (kind in rescaled_kinds()), kind
    expected = [k for k in column_kinds() if LIKELIHOODS[k](aevb.ModelConfig()).location_scale]
    assert list(rescaled_kinds()) == expected
    assert "gaussian-robust" in expected and "poisson" not in expected  # heads' own answers, spot-checked
    assert not make_likelihood(aevb.ModelConfig(likelihood="gaussian-learned-sigmoid")).location_scale


def test_detect_help_names_every_column_kind_and_the_rescaled_ones(capsys):
    import aevb.cli

    with pytest.raises(SystemExit):
        aevb.cli.main(["detect", "fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"KIND one of {', '.join(column_kinds())}," in text
    assert f"location-scale kinds ({', '.join(rescaled_kinds())})" in text
