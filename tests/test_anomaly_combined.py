"""The latent nearest-neighbour and local-outlier-factor scores and the combined image score of
`aevb.AnomalyDetector` against ground truth: the distances against a brute-force loop, the outlier factor against
scikit-learn's LocalOutlierFactor, the combined score against a hand computation from its five parts (log p(x), the
PNG code length written out by hand, the posterior means, scikit-learn's outlier factor and Gaussian mixture), the
default on images, persistence of what the scores are fitted with (and of the three- and four-part combined scores
of versions 6 and 7), and `aevb detect`."""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import aevb
from aevb.anomaly import InputError
from aevb.anomaly import latent as latent_module
from aevb.anomaly.columns import rescaled_mask
from aevb.anomaly.latent import knn_distance, local_density, lof_score, nearest
from aevb.anomaly.scaling import transform
from aevb_process import aevb_main, one_line_error
from test_anomaly_scores import TINY, _scanlines


def _brute_knn(reference: np.ndarray, codes: np.ndarray, k: int, exclude_self: bool) -> np.ndarray:
    """The mean of the k smallest Euclidean distances of each code to the reference rows, one row at a time; with
    exclude_self, code i is reference row i and that row is left out."""
    out = []
    for i, c in enumerate(codes):
        d = [math.dist(c, r) for j, r in enumerate(reference) if not (exclude_self and j == i)]
        out.append(np.mean(sorted(d)[:k]))
    return np.array(out)


def test_the_latent_distance_is_the_mean_of_the_k_smallest_distances(monkeypatch):
    g = torch.Generator().manual_seed(0)
    reference = torch.randn(40, 3, generator=g)
    reference[7] = reference[3]  # a duplicate: its nearest other row is at distance 0
    codes = torch.randn(25, 3, generator=g) * 2
    ref64, codes64 = reference.double().numpy(), codes.double().numpy()
    for k in (1, 5):
        got = knn_distance(reference, codes, k).numpy()
        np.testing.assert_allclose(got, _brute_knn(ref64, codes64, k, False), rtol=1e-12, atol=1e-12)
        own = knn_distance(reference, reference, k, exclude_self=True).numpy()
        np.testing.assert_allclose(own, _brute_knn(ref64, ref64, k, True), rtol=1e-12, atol=1e-12)
    assert knn_distance(reference, reference, 1, exclude_self=True)[3].item() == 0.0
    # more neighbours than reference rows: all of them
    np.testing.assert_allclose(knn_distance(reference[:3], codes, 5).numpy(), _brute_knn(ref64[:3], codes64, 3, False))
    # the chunks do not change a number
    whole = knn_distance(reference, codes, 5)
    monkeypatch.setattr(latent_module, "_CHUNK_DISTANCES", 7 * 40)  # 7 rows per chunk
    assert torch.equal(knn_distance(reference, codes, 5), whole)
    with pytest.raises(ValueError, match="no neighbour"):
        knn_distance(reference[:1], reference[:1], 5, exclude_self=True)


def _sklearn_log_lof(reference: np.ndarray, codes: np.ndarray | None, k: int) -> np.ndarray:
    """Minus the log local outlier factor by scikit-learn: of `codes` against `reference` (novelty), or of the
    reference rows themselves among the others (codes None)."""
    from sklearn.neighbors import LocalOutlierFactor

    lof = LocalOutlierFactor(n_neighbors=k, novelty=codes is not None).fit(reference)
    factor = -lof.negative_outlier_factor_ if codes is None else -lof.score_samples(codes)
    return -np.log(factor)


def test_the_latent_outlier_factor_is_scikit_learns(monkeypatch):
    g = torch.Generator().manual_seed(1)
    reference = torch.cat([torch.randn(60, 3, generator=g) * 0.2, torch.randn(40, 3, generator=g) * 2 + 4])
    codes = torch.randn(30, 3, generator=g) * 3
    ref64, codes64 = reference.double().numpy(), codes.double().numpy()
    for k in (1, 5, 12):
        density = local_density(reference, k)
        assert density.dtype == torch.float64 and density.shape == (2, 100)
        np.testing.assert_allclose(density[0].numpy(), np.sort(_brute_distances(ref64, ref64, True), 1)[:, k - 1])
        got = lof_score(density, *nearest(reference, codes, k)).numpy()
        np.testing.assert_allclose(got, _sklearn_log_lof(ref64, codes64, k), rtol=1e-9, atol=1e-12)
        own = lof_score(density, *nearest(reference, reference, k, exclude_self=True)).numpy()
        np.testing.assert_allclose(own, _sklearn_log_lof(ref64, None, k), rtol=1e-9, atol=1e-12)
    # what the distance misses: a code just off the tight cluster is nearer its neighbours than the wide cluster's
    # centre is to its own, and yet the sparser for where it lies (a factor of e^0.65 against about 1)
    points = torch.tensor([[0.8, 0.0, 0.0], [4.0, 4.0, 4.0]])
    distance = knn_distance(reference, points, 5)
    factor = lof_score(local_density(reference), *nearest(reference, points))
    assert distance[0] < distance[1] / 3 and factor[0] < -0.5 and abs(factor[1]) < 0.1
    whole = lof_score(local_density(reference), *nearest(reference, codes))
    monkeypatch.setattr(latent_module, "_CHUNK_DISTANCES", 7 * 100)  # 7 rows per chunk
    assert torch.equal(lof_score(local_density(reference), *nearest(reference, codes)), whole)


def _brute_distances(reference: np.ndarray, codes: np.ndarray, exclude_self: bool) -> np.ndarray:
    """Every code's Euclidean distance to every reference row (n, m), with code i's own row dropped (n, m - 1)."""
    d = np.array([[math.dist(c, r) for r in reference] for c in codes])
    return np.array([np.delete(row, i) for i, row in enumerate(d)]) if exclude_self else d


def _posterior_means(det, rows: np.ndarray) -> np.ndarray:
    """E[z|x] of the rows as the detector's model sees them: rescaled by its scaler, (n, Dz) float64."""
    scaled = transform(det.scaler_, rows, rescaled_mask(det.likelihood_, det.columns, rows.shape[1]))
    with torch.no_grad():
        return det.model_.encode(torch.from_numpy(scaled.astype(np.float32))).mean.double().numpy()


def test_the_combined_score_is_the_sum_of_its_five_parts_standardised_on_the_training_rows(images):
    """By hand: log p(x) (the detector's own log-likelihood score), c_1 = log p(x) + L(x) ln 2 with L(x) the zlib
    level-9 length of the PNG scanlines written out by hand, minus the mean distance of E[z|x] to the 5 nearest
    training rows' (brute force; a training row's own code left out), minus the log of scikit-learn's local
    outlier factor of E[z|x] among them (5 neighbours) and the log density of E[z|x] under scikit-learn's Gaussian
    mixture of 20 components fitted to them; each minus its training median, over its training interquartile
    range; added. It is the default score on images."""
    from sklearn.mixture import GaussianMixture

    from aevb.anomaly.mixture import REGULARISATION

    x, x_test = images
    det = aevb.AnomalyDetector(random_state=5, **TINY).fit(x)
    assert (det.score, det.score_, det.image_shape_) == ("auto", "combined", (8, 8))
    train_codes = _posterior_means(det, x)
    np.testing.assert_allclose(det.latent_reference_.double().numpy(), train_codes, rtol=1e-6, atol=1e-6)
    gmm = GaussianMixture(20, covariance_type="full", reg_covar=REGULARISATION, random_state=5)
    gmm.fit(det.latent_reference_.double().numpy())

    def by_hand(rows: np.ndarray, training: bool) -> np.ndarray:
        log_p = det.scores(rows, "log-likelihood")
        bits = np.array([8.0 * len(zlib.compress(_scanlines(r, 8, 8), 9)) for r in rows])
        codes = _posterior_means(det, rows)
        knn = -_brute_knn(train_codes, codes, 5, training)
        lof = _sklearn_log_lof(train_codes, None if training else codes, 5)
        return np.stack([log_p, log_p + bits * math.log(2), knn, lof, gmm.score_samples(codes)])

    train_parts = by_hand(x, True)
    q1, median, q3 = np.percentile(train_parts, [25, 50, 75], axis=1)
    np.testing.assert_allclose(det.combined_standardisation_.numpy(), np.stack([median, q3 - q1]), rtol=1e-6)
    expected = ((by_hand(x_test, False) - median[:, None]) / (q3 - q1)[:, None]).sum(0)
    np.testing.assert_allclose(det.score_samples(x_test), expected, rtol=1e-5, atol=1e-5)
    train_expected = ((train_parts - median[:, None]) / (q3 - q1)[:, None]).sum(0)
    np.testing.assert_allclose(det.train_scores_, train_expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(det.calibration_scores_, np.sort(det.train_scores_))
    q1, q3 = np.percentile(det.train_scores_, [25, 75])
    assert det.offset_ == pytest.approx(q1 - 1.5 * (q3 - q1), rel=1e-12)
    # the latent scores on their own are the last three parts; a detector fitted with "combined" has the
    # reference, density and mixture they need
    for j, name in ((2, "latent-knn"), (3, "latent-lof"), (4, "latent-gmm")):
        np.testing.assert_allclose(det.scores(x_test, name), by_hand(x_test, False)[j], rtol=1e-6, atol=1e-6)
        alone = aevb.AnomalyDetector(score=name, random_state=5, **TINY).fit(x)
        np.testing.assert_array_equal(alone.score_samples(x_test), det.scores(x_test, name))  # the same fit
        np.testing.assert_allclose(alone.train_scores_, train_parts[j], rtol=1e-6, atol=1e-6)
        assert alone.combined_standardisation_ is None
        assert (alone.latent_density_ is None) == (name != "latent-lof")
        assert (alone.latent_mixture_ is None) == (name != "latent-gmm")
    plain = aevb.AnomalyDetector(score="complexity", **TINY).fit(x)
    assert plain.latent_reference_ is None and plain.latent_density_ is None and plain.combined_standardisation_ is None
    assert plain.latent_mixture_ is None
    for name in ("combined", "latent-knn", "latent-lof", "latent-gmm"):
        with pytest.raises(InputError, match=f"the {name} score needs a detector fitted with score='{name}'"):
            plain.scores(x_test, name)


def test_the_combined_score_ranks_a_held_out_simple_digit_better_than_log_p(digits):
    """The 8 x 8 digits, fitted on every digit but 1 and scored on 1s against the others: the combined score ranks
    the held-out digit more anomalous than log p(x) does, by a clear margin in ROC-AUC."""
    from sklearn.metrics import roc_auc_score

    x = digits.train.reshape(len(digits.train), -1).double().numpy()
    y = digits.train_labels.numpy()
    x_test = digits.test.reshape(len(digits.test), -1).double().numpy()
    y_test = digits.test_labels.numpy()
    det = aevb.AnomalyDetector(random_state=0, epochs=30, n_samples=20).fit(x[y != 1])
    normal = (y_test != 1).astype(int)
    log_p = roc_auc_score(normal, det.scores(x_test, "log-likelihood"))
    combined = roc_auc_score(normal, det.score_samples(x_test))
    assert combined > log_p + 0.05, (combined, log_p)


def _column(j: int, width: int) -> torch.Tensor:
    """(1, width) float64, 1 in column j: added to a packed mixture (latent size 2: 7 columns), it raises every
    component's log weight (j = 0) or sets an entry below the diagonal of its precision factor (j = 5)."""
    return torch.nn.functional.one_hot(torch.tensor([j]), width).double()


def test_load_checks_what_the_scores_are_fitted_with(tmp_path, images):
    x, x_test = images
    det = aevb.AnomalyDetector(random_state=1, **TINY).fit(x)
    det.save(tmp_path / "c")
    back = aevb.AnomalyDetector.load(tmp_path / "c")
    assert torch.equal(back.latent_reference_, det.latent_reference_)
    assert torch.equal(back.combined_standardisation_, det.combined_standardisation_)
    assert torch.equal(back.latent_density_, det.latent_density_)
    assert torch.equal(back.latent_mixture_, det.latent_mixture_)
    np.testing.assert_array_equal(back.score_samples(x_test), det.score_samples(x_test))
    np.testing.assert_array_equal(back.scores(x_test, "latent-knn"), det.scores(x_test, "latent-knn"))
    aevb.AnomalyDetector(score="log-likelihood", **TINY).fit(x).save(tmp_path / "plain")

    def variant(name: str, source: str, change) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        tensors = load_file(tmp_path / source / "detector.safetensors")
        change(tensors)
        save_file(tensors, folder / "detector.safetensors", metadata={"format": "pt"})
        rec = json.loads((tmp_path / source / "detector.json").read_text())
        rec["weights_sha256"] = hashlib.sha256((folder / "detector.safetensors").read_bytes()).hexdigest()
        (folder / "detector.json").write_text(json.dumps(rec))
        return folder

    plain_reference = det.latent_reference_.clone()
    cases = {
        "no reference": ("c", lambda t: t.pop("latent.reference"), "'combined' needs latent.reference"),
        "no standardisation": ("c", lambda t: t.pop("combined.standardisation"), "needs combined.standardisation"),
        "stray": ("plain", lambda t: t.update({"latent.reference": plain_reference}), "has no use for latent.ref"),
        "width": (
            "c",
            lambda t: t.update({"latent.reference": t["latent.reference"][:, :1].contiguous()}),
            "latent.reference is",
        ),
        "scale": (
            "c",
            lambda t: t.update({"combined.standardisation": torch.tensor([[0.0] * 5, [1.0, 0.0, 1, 1, 1]]).double()}),
            "combined.standardisation is malformed",
        ),
        "four parts": (
            "c",
            lambda t: t.update({"combined.standardisation": t["combined.standardisation"][:, :4].contiguous()}),
            "combined.standardisation is malformed",
        ),
        "no mixture": ("c", lambda t: t.pop("latent.mixture"), "'combined' needs latent.mixture"),
        "mixture width": (
            "c",
            lambda t: t.update({"latent.mixture": t["latent.mixture"][:, :-1].contiguous()}),
            "latent.mixture is malformed",
        ),
        "mixture weights": (
            "c",
            lambda t: t.update({"latent.mixture": t["latent.mixture"] + _column(0, 7)}),
            "latent.mixture is malformed",
        ),
        "mixture factor": (
            "c",
            lambda t: t.update({"latent.mixture": t["latent.mixture"] * torch.tensor([1.0] * 5 + [-1.0] * 2)}),
            "latent.mixture is malformed",
        ),
        "mixture triangle": (
            "c",
            lambda t: t.update({"latent.mixture": t["latent.mixture"] + _column(5, 7)}),
            "latent.mixture is malformed",
        ),
        "no density": ("c", lambda t: t.pop("latent.density"), "'combined' needs latent.density"),
        "density rows": (
            "c",
            lambda t: t.update({"latent.density": t["latent.density"][:, :-1].contiguous()}),
            "latent.density is malformed",
        ),
        "density zero": (
            "c",
            lambda t: t.update({"latent.density": t["latent.density"] * torch.tensor([[1.0], [0.0]]).double()}),
            "latent.density is malformed",
        ),
    }
    for name, (source, change, message) in cases.items():
        with pytest.raises(aevb.CheckpointError, match=message):
            aevb.AnomalyDetector.load(variant(name, source, change))


def test_a_version_6_combined_detector_scores_with_its_three_parts(tmp_path, images):
    """A detector saved before the fourth part (version 6: no latent density, a standardisation of three entries)
    loads and scores as it did: the sum of the first three parts, standardised by its own medians and IQRs."""
    from aevb.anomaly.combined import parts

    x, x_test = images
    det = aevb.AnomalyDetector(random_state=2, **TINY).fit(x)
    det.save(tmp_path / "now")
    tensors = load_file(tmp_path / "now" / "detector.safetensors")
    tensors.pop("latent.density")
    tensors.pop("latent.mixture")
    old_scale = torch.tensor([[-70.0, 250.0, -0.05], [20.0, 40.0, 0.04]], dtype=torch.float64)
    tensors["combined.standardisation"] = old_scale
    (tmp_path / "v6").mkdir()
    save_file(tensors, tmp_path / "v6" / "detector.safetensors", metadata={"format": "pt"})
    rec = json.loads((tmp_path / "now" / "detector.json").read_text())
    rec["version"] = 6
    rec["weights_sha256"] = hashlib.sha256((tmp_path / "v6" / "detector.safetensors").read_bytes()).hexdigest()
    (tmp_path / "v6" / "detector.json").write_text(json.dumps(rec))
    old = aevb.AnomalyDetector.load(tmp_path / "v6")
    assert torch.equal(old.latent_density_, det.latent_density_)  # computed from the reference when loaded
    x_rows = det._tensor(x_test)
    bits = torch.from_numpy(np.array([8.0 * len(zlib.compress(_scanlines(r, 8, 8), 9)) for r in x_test]))
    every = parts(
        det.model_, x_rows, det.n_samples, det.random_state,
        code_bits=bits, reference=det.latent_reference_, density=det.latent_density_, mixture=det.latent_mixture_,
    ).numpy()  # fmt: skip
    expected = ((every[:3] - old_scale[0, :, None].numpy()) / old_scale[1, :, None].numpy()).sum(0)
    np.testing.assert_allclose(old.score_samples(x_test), expected, rtol=1e-9, atol=1e-9)
    assert old.latent_mixture_ is None
    rec["version"] = 7  # the same files called version 7 lack the density and have too few parts
    (tmp_path / "v6" / "detector.json").write_text(json.dumps(rec))
    with pytest.raises(aevb.CheckpointError, match="'combined' needs latent.density"):
        aevb.AnomalyDetector.load(tmp_path / "v6")


def test_a_version_7_combined_detector_scores_with_its_four_parts(tmp_path, images):
    """A detector saved before the fifth part (version 7: no latent mixture, a standardisation of four entries)
    loads and scores as it did: the sum of the first four parts, standardised by its own medians and IQRs; the
    latent-gmm score, which it was not fitted with, is a one-line error."""
    from aevb.anomaly.combined import parts

    x, x_test = images
    det = aevb.AnomalyDetector(random_state=3, **TINY).fit(x)
    det.save(tmp_path / "now")
    tensors = load_file(tmp_path / "now" / "detector.safetensors")
    tensors.pop("latent.mixture")
    old_scale = torch.tensor([[-70.0, 250.0, -0.05, -0.1], [20.0, 40.0, 0.04, 0.3]], dtype=torch.float64)
    tensors["combined.standardisation"] = old_scale
    (tmp_path / "v7").mkdir()
    save_file(tensors, tmp_path / "v7" / "detector.safetensors", metadata={"format": "pt"})
    rec = json.loads((tmp_path / "now" / "detector.json").read_text())
    assert rec["version"] == 8
    rec["version"] = 7
    rec["weights_sha256"] = hashlib.sha256((tmp_path / "v7" / "detector.safetensors").read_bytes()).hexdigest()
    (tmp_path / "v7" / "detector.json").write_text(json.dumps(rec))
    old = aevb.AnomalyDetector.load(tmp_path / "v7")
    assert old.latent_mixture_ is None and torch.equal(old.latent_density_, det.latent_density_)
    x_rows = det._tensor(x_test)
    bits = torch.from_numpy(np.array([8.0 * len(zlib.compress(_scanlines(r, 8, 8), 9)) for r in x_test]))
    four = parts(
        det.model_, x_rows, det.n_samples, det.random_state,
        code_bits=bits, reference=det.latent_reference_, density=det.latent_density_, count=4,
    ).numpy()  # fmt: skip
    expected = ((four - old_scale[0, :, None].numpy()) / old_scale[1, :, None].numpy()).sum(0)
    np.testing.assert_allclose(old.score_samples(x_test), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(old.scores(x_test, "latent-lof"), det.scores(x_test, "latent-lof"))
    with pytest.raises(InputError, match="the latent-gmm score needs a detector fitted with score='latent-gmm'"):
        old.scores(x_test, "latent-gmm")
    rec["version"] = 8  # the same files called version 8 lack the mixture and have too few parts
    (tmp_path / "v7" / "detector.json").write_text(json.dumps(rec))
    with pytest.raises(aevb.CheckpointError, match="'combined' needs latent.mixture"):
        aevb.AnomalyDetector.load(tmp_path / "v7")


def test_cli_fits_and_scores_the_combined_score(tmp_path, images):
    x, x_test = images
    np.save(tmp_path / "train.npy", x.astype(np.float32))
    np.save(tmp_path / "test.npy", x_test.astype(np.float32))
    tiny = ["--hidden", 16, "--latent-dim", 2, "--epochs", 3, "--n-samples", 5, "--refits", 0, "--no-progress"]
    fit = aevb_main(tmp_path, ["detect", "fit", "train.npy", "--out", "d", *tiny])
    assert fit.returncode == 0, fit.stderr
    assert "score combined (unitless, higher = more normal)" in fit.stdout
    det = aevb.AnomalyDetector.load(tmp_path / "d")
    assert det.score_ == "combined"
    scored = aevb_main(tmp_path, ["detect", "score", "d", "test.npy", "--out", "d.csv"])
    assert scored.returncode == 0, scored.stderr
    table = np.loadtxt(tmp_path / "d.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(table[:, 0], det.score_samples(x_test.astype(np.float32)), rtol=1e-6, atol=1e-7)
    one = aevb_main(tmp_path, ["detect", "fit", "train.npy", "--out", "one", "--score", "latent-knn", *tiny])
    assert one.returncode == 0, one.stderr
    assert "score latent-knn (units of z, higher = more normal)" in one.stdout
    assert aevb.AnomalyDetector.load(tmp_path / "one").latent_reference_.shape == (300, 2)
    lof = aevb_main(tmp_path, ["detect", "fit", "train.npy", "--out", "lof", "--score", "latent-lof", *tiny])
    assert lof.returncode == 0, lof.stderr
    assert "score latent-lof (unitless, higher = more normal)" in lof.stdout
    assert aevb.AnomalyDetector.load(tmp_path / "lof").latent_density_.shape == (2, 300)
    bad = aevb_main(tmp_path, ["detect", "fit", "train.npy", "--out", "bad", "--score", "latent", *tiny])
    assert bad.returncode == 2
    one_line_error(bad, "invalid choice: 'latent'")
