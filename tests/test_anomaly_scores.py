"""The image anomaly scores of `aevb.AnomalyDetector` against ground truth: the PNG code length against zlib and a
PNG decoder, the complexity correction on images where the raw likelihood prefers the simplest ones (Nalisnick et
al. 2019), the likelihood ratio against the two models' own log p(x), conformal p-values (a closed-form count and
uniformity on held-out normal rows), pickle-free persistence of every score, `random_state`, and `aevb detect`."""

from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from scipy.stats import kstest
from sklearn.base import clone

import aevb
from aevb.anomaly import SCORES, InputError, conformal_p_values, png_code_length
from aevb.anomaly.columns import rescaled_mask
from aevb.anomaly.complexity import infer_image_shape
from aevb.anomaly.fitting import fit_vae, model_config, perturbed
from aevb.anomaly.scaling import transform
from aevb.evaluate import log_likelihood
from aevb_process import aevb_main, one_line_error
from test_anomaly import manifold_data

TINY = {"hidden": (16,), "latent_dim": 2, "epochs": 3, "n_samples": 5, "refits": 0}


def _scanlines(row: np.ndarray, h: int, w: int) -> bytes:
    """The PNG scanlines written out by hand: filter byte 0, then W 8-bit grey values round(255 x), per image row."""
    values = [min(255, max(0, round(255 * float(v)))) for v in row]
    return b"".join(b"\x00" + bytes(values[i * w : (i + 1) * w]) for i in range(h))


def _png_file(idat: bytes, h: int, w: int) -> bytes:
    """A complete 8-bit greyscale PNG file around the IDAT data (signature, IHDR, IDAT, IEND with CRCs)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # bit depth 8, grey, deflate, filter method 0, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# --- the PNG code length L(x) -----------------------------------------------------------------------


def test_png_code_length_is_the_zlib_level_9_length_of_a_png_that_decodes_to_the_image(images):
    image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    rng = np.random.default_rng(0)
    rows = np.concatenate([images[1][:10], rng.uniform(0, 1, (3, 64)), np.zeros((1, 64)), np.full((1, 64), 1.7)])
    for h, w in ((8, 8), (4, 16)):
        bits = png_code_length(rows, (h, w))
        assert bits.shape == (len(rows),) and bits.dtype == np.float64
        for row, b in zip(rows, bits):
            idat = zlib.compress(_scanlines(row, h, w), 9)
            assert b == 8 * len(idat)
            decoded = np.asarray(image.open(io.BytesIO(_png_file(idat, h, w))))  # a PNG decoder reads them back
            np.testing.assert_array_equal(decoded, np.clip(np.rint(row * 255), 0, 255).reshape(h, w))
    # a constant image compresses to a few bytes, uniform noise hardly at all (64 raw bytes + 8 filter bytes)
    assert bits[13] < 8 * 16 and bits[10] > 8 * 64
    np.testing.assert_array_equal(png_code_length(rows, None), np.zeros(len(rows)))  # a table: no code length


def test_the_image_shape_is_inferred_only_for_square_rows_in_the_unit_interval(images):
    x = images[0]
    assert infer_image_shape(x) == (8, 8)
    assert infer_image_shape(np.c_[x, x][:, :100]) == (10, 10)
    assert infer_image_shape(x[:, :49]) is None  # square, but under 64 pixels
    assert infer_image_shape(x[:, :63]) is None  # not square
    assert infer_image_shape(np.r_[x, np.full((1, 64), 1.01)]) is None  # a value above 1: a table
    assert infer_image_shape(np.r_[x, np.full((1, 64), -0.01)]) is None
    assert aevb.AnomalyDetector(score="complexity", **TINY).fit(x).image_shape_ == (8, 8)
    assert aevb.AnomalyDetector(score="complexity", image_shape=(4, 16), **TINY).fit(x).image_shape_ == (4, 16)
    assert aevb.AnomalyDetector(score="complexity", image_shape=None, **TINY).fit(x).image_shape_ is None
    with pytest.raises(InputError, match=r"image_shape \(5, 5\) does not hold rows of 64 columns"):
        aevb.AnomalyDetector(image_shape=(5, 5), **TINY).fit(x)
    for bad in ("8x8", (8,), (8, 0), (8.0, 8), 64):
        with pytest.raises(InputError, match="image_shape must be 'auto', None or"):
            aevb.AnomalyDetector(image_shape=bad, **TINY).fit(x)


# --- complexity: Serra et al. (2020) ----------------------------------------------------------------


def _noisy_frames(digits: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    """Two kinds of 8 x 8 camera frames, both with sensor noise N(0, 0.05^2): a digit (grey levels 0.1..0.9)
    and an empty frame (0.1 everywhere); 2n rows in [0, 1]."""
    n = len(digits)
    scene = np.r_[0.1 + 0.8 * digits.reshape(n, -1).double().numpy(), np.full((n, 64), 0.1)]
    return np.clip(scene + 0.05 * rng.standard_normal(scene.shape), 0.0, 1.0)


def test_the_complexity_correction_stops_noiseless_blank_frames_looking_most_normal(digits):
    """Nalisnick et al. (2019): a likelihood model of noisy frames gives a frame without noise, the simplest
    input there is, a higher likelihood than any frame like those it was fitted on. Serra's correction adds
    the frame's PNG code length: the noiseless frames, a few bytes each, go from most normal to least."""
    rng = np.random.default_rng(0)
    x_train, x_test = _noisy_frames(digits.train[:500], rng), _noisy_frames(digits.test[:150], rng)
    clean = np.full((3, 64), 0.1)  # blank and near-blank frames, no noise
    clean[1, 27], clean[2, [27, 35]] = 0.3, 0.5
    x = np.r_[x_test, clean]
    # the robust Gaussian (not "auto"'s learned one for images): it caps what the near-blank frames' one or two
    # bright pixels cost, so that all three are the raw likelihood's most normal rows
    det = aevb.AnomalyDetector(
        score="complexity",
        complexity_weight=1.0,  # Serra et al.'s score
        likelihood="gaussian-robust",
        epochs=20,
        n_samples=20,
        refits=0,
        hidden=(64,),
        latent_dim=4,
    )
    det.fit(x_train)
    raw, corrected = det.scores(x, "log-likelihood"), det.score_samples(x)
    assert set(np.argsort(-raw)[:3]) == {300, 301, 302}, raw[-3:]  # the raw likelihood: the 3 most normal rows
    assert set(np.argsort(corrected)[:3]) == {300, 301, 302}, corrected[-3:]  # corrected: the 3 least normal
    # the score is log p(x) + L(x) ln 2 nats, i.e. -S(x) ln 2 for Serra's S(x) = -log2 p(x) - L(x) bits
    np.testing.assert_allclose(corrected, raw + png_code_length(x, (8, 8)) * math.log(2), rtol=1e-12)
    assert np.mean(det.predict(clean) == -1) == 1 and np.mean(det.predict(x_test) == 1) > 0.9


def test_complexity_on_a_table_is_the_log_likelihood(data_5d):
    det = aevb.AnomalyDetector(score="complexity", **TINY).fit(data_5d[0])
    assert det.image_shape_ is None
    np.testing.assert_array_equal(det.score_samples(data_5d[1]), det.scores(data_5d[1], "log-likelihood"))


def test_the_complexity_score_is_tempered_by_its_weight_and_a_tables_default_is_the_log_likelihood(images, data_5d):
    """score="complexity": log p(x) + 0.1 L(x) ln 2 by default, L(x) the zlib level-9 length of the PNG scanlines
    written out by hand; complexity_weight mu scales L(x) alone (mu = 0: log p(x), mu = 1: Serra's score); a
    table's default score is log p(x) (an image's, "combined", is in test_anomaly_combined.py)."""
    x, x_test = images
    bits = np.array([8.0 * len(zlib.compress(_scanlines(r, 8, 8), 9)) for r in x_test])
    det = aevb.AnomalyDetector(score="complexity", random_state=3, **TINY).fit(x)
    assert (det.score, det.score_, det.complexity_weight) == ("complexity", "complexity", 0.1)
    log_p = det.scores(x_test, "log-likelihood")
    np.testing.assert_allclose(det.score_samples(x_test), log_p + 0.1 * bits * math.log(2), rtol=1e-12)
    np.testing.assert_allclose(det.train_scores_, det.scores(x, "complexity"), rtol=0)
    for mu in (0.0, 1.0, 2.5):
        other = clone(det).set_params(complexity_weight=mu).fit(x)  # the same fit: the weight is not used by it
        np.testing.assert_array_equal(other.scores(x_test, "log-likelihood"), log_p)
        np.testing.assert_allclose(other.score_samples(x_test), log_p + mu * bits * math.log(2), rtol=1e-12)
    assert (det.score_samples(x_test) != log_p).all()
    # the offset and the p-values rank against the training rows' complexity scores
    assert det.offset_ == pytest.approx(_tukey_fence(det.scores(x, "complexity")), rel=1e-12)
    np.testing.assert_array_equal(det.calibration_scores_, np.sort(det.scores(x, "complexity")))
    table = aevb.AnomalyDetector(random_state=3, **TINY).fit(data_5d[0])
    assert (table.score_, table.image_shape_) == ("log-likelihood", None)
    explicit = aevb.AnomalyDetector(score="log-likelihood", random_state=3, **TINY).fit(data_5d[0])
    np.testing.assert_array_equal(table.score_samples(data_5d[1]), explicit.score_samples(data_5d[1]))


def _tukey_fence(scores: np.ndarray) -> float:
    q1, q3 = np.percentile(scores, [25, 75])
    return float(q1 - 1.5 * (q3 - q1))


# --- the likelihood ratio: Ren et al. (2019) ---------------------------------------------------------


@pytest.fixture(scope="module")
def data_5d() -> tuple[np.ndarray, np.ndarray]:
    return manifold_data(300, 0, seed=0)[0], manifold_data(40, 10, seed=1)[0]


def test_the_likelihood_ratio_is_the_difference_of_the_two_models_log_likelihoods(data_5d):
    a, a_test = data_5d
    det = aevb.AnomalyDetector(score="likelihood-ratio", background_noise=0.3, random_state=4, **TINY).fit(a)
    mask = rescaled_mask(det.likelihood_, det.columns, 5)

    def rescaled(rows):
        return torch.from_numpy(np.ascontiguousarray(transform(det.scaler_, rows, mask), dtype=np.float32))

    k, seed = det.n_samples, det.random_state
    model_lp = log_likelihood(det.model_, rescaled(a_test), k=k, seed=seed, shared_noise=True).double()
    background_lp = log_likelihood(det.background_, rescaled(a_test), k=k, seed=seed, shared_noise=True).double()
    np.testing.assert_allclose(det.score_samples(a_test), (model_lp - background_lp).numpy(), rtol=1e-6, atol=1e-6)
    assert not np.allclose(det.score_samples(a_test), model_lp.numpy())  # the background does subtract something

    # the background is the same architecture fitted, seed random_state + 1, to the rescaled rows with a
    # fraction mu of their values replaced by uniform draws within each column's range
    x = rescaled(a)
    noisy = perturbed(x, 0.3, 5)
    changed = (noisy != x).double().mean().item()
    assert abs(changed - 0.3) < 4 * math.sqrt(0.3 * 0.7 / x.numel())  # Binomial(n d, mu) / (n d)
    assert (noisy >= x.min(0).values).all() and (noisy <= x.max(0).values).all()
    config = model_config(5, det.size_, det.likelihood_, det.columns, det.logvar_min, det.outlier_weight)
    expected = fit_vae(noisy, config, det.size_, det.lr, 5)
    for (name, p), q in zip(expected.state_dict().items(), det.background_.state_dict().values()):
        assert torch.equal(p, q), name
    assert aevb.AnomalyDetector(**TINY).fit(a).background_ is None  # only the likelihood ratio fits one
    with pytest.raises(InputError, match="needs a detector fitted with score='likelihood-ratio'"):
        aevb.AnomalyDetector(**TINY).fit(a).scores(a_test, "likelihood-ratio")
    with pytest.raises(InputError, match=r"background_noise must be in \(0, 1\)"):
        aevb.AnomalyDetector(score="likelihood-ratio", background_noise=1.0, **TINY).fit(a)


# --- calibration: conformal p-values -------------------------------------------------------------------


def test_p_values_are_the_closed_form_count(data_5d):
    reference = np.sort(np.array([-3.0, -1.0, 5.0, 0.0, -1.0, 2.0]))
    got = conformal_p_values(reference, np.array([-4.0, -3.0, -1.0, 0.5, 5.0, 6.0]))
    np.testing.assert_array_equal(got, np.array([1, 2, 4, 5, 7, 7]) / 7)  # (1 + #{reference <= s}) / (6 + 1)

    a, a_test = data_5d
    det = aevb.AnomalyDetector(**TINY).fit(a)
    np.testing.assert_array_equal(det.calibration_scores_, np.sort(det.train_scores_))
    s = det.score_samples(a_test)
    by_count = (1 + (det.train_scores_[None, :] <= s[:, None]).sum(1)) / (len(a) + 1)
    np.testing.assert_array_equal(det.p_values(a_test), by_count)
    # ties with the training scores count as at least as anomalous: a training row's own p-value includes itself
    own = conformal_p_values(det.calibration_scores_, det.train_scores_[:5])
    np.testing.assert_array_equal(det.p_values(a[:5]), own)
    assert det.p_values(a[:5]).min() >= 1 / (len(a) + 1)


def test_p_values_of_held_out_normal_rows_are_uniform():
    """Against 2000 training scores (a fixed calibration set moves the p-values' distribution by ~1/sqrt(2000)),
    200 new normal rows give p-values that a Kolmogorov-Smirnov test does not tell from uniform."""
    x_train, _ = manifold_data(2000, 0, seed=10)
    x_new, _ = manifold_data(200, 0, seed=100)
    det = aevb.AnomalyDetector(epochs=10, n_samples=20, random_state=0).fit(x_train)
    p = det.p_values(x_new)
    assert kstest(p, "uniform").pvalue > 0.01, np.sort(p)[::20]
    rows, y = manifold_data(10, 50, seed=7)
    assert np.median(det.p_values(rows[y == 1])) < 0.05  # and anomalies get small ones


# --- persistence: every score, no pickle ---------------------------------------------------------------


@pytest.mark.parametrize("score", list(SCORES))
def test_a_saved_detector_reloads_without_pickle_and_scores_bit_for_bit(tmp_path, monkeypatch, images, score):
    x, x_test = images
    det = aevb.AnomalyDetector(score=score, random_state=3, **TINY).fit(x)
    det.save(tmp_path / "d")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["detector.json", "detector.safetensors"]

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    back = aevb.AnomalyDetector.load(tmp_path / "d")
    assert back.get_params() == det.get_params() and back.image_shape_ == det.image_shape_ == (8, 8)
    np.testing.assert_array_equal(back.score_samples(x_test), det.score_samples(x_test))
    np.testing.assert_array_equal(back.p_values(x_test), det.p_values(x_test))
    np.testing.assert_array_equal(back.calibration_scores_, det.calibration_scores_)
    np.testing.assert_array_equal(back.predict(x_test), det.predict(x_test))
    assert (back.background_ is None) == (det.background_ is None) == (score != "likelihood-ratio")
    if det.background_ is not None:
        for (name, p), q in zip(det.background_.state_dict().items(), back.background_.state_dict().values()):
            assert torch.equal(p, q), name


def test_load_refuses_a_background_that_does_not_fit_the_score_and_reads_old_records(tmp_path, images):
    x, x_test = images
    ratio = aevb.AnomalyDetector(score="likelihood-ratio", **TINY).fit(x).save(tmp_path / "ratio")
    plain = aevb.AnomalyDetector(score="log-likelihood", random_state=2, **TINY).fit(x)
    plain.save(tmp_path / "plain")

    def variant(name: str, source: Path, change) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "detector.safetensors").write_bytes((source / "detector.safetensors").read_bytes())
        rec = json.loads((source / "detector.json").read_text())
        change(rec)
        (folder / "detector.json").write_text(json.dumps(rec))
        return folder

    cases = {
        "no background": (ratio, lambda r: r.update(background_model=None), "'likelihood-ratio' without a background"),
        "stray background": (
            tmp_path / "plain",
            lambda r: r.update(background_model=r["model"]),
            "'log-likelihood' with a background",
        ),
        "shape": (tmp_path / "plain", lambda r: r["fitted"].update(image_shape_=[5, 5]), "does not hold rows of 64"),
        "score": (tmp_path / "plain", lambda r: r["fitted"].update(score_="typicality"), "score 'typicality'"),
    }
    for name, (source, change, message) in cases.items():
        with pytest.raises(aevb.CheckpointError, match=message):
            aevb.AnomalyDetector.load(variant(name, source, change))

    def version_2(r):  # what this detector's files looked like before: `seed`, a table, no training scores
        r["version"] = 2
        r["params"].pop("complexity_weight")
        for name in ("likelihood", "refits"):  # before "auto": the values fitted with
            r["params"][name] = r["fitted"].pop(f"{name}_")
        r["params"]["seed"] = r["params"].pop("random_state")
        for key in ("image_shape", "background_noise"):
            r["params"].pop(key)
        r["fitted"].pop("image_shape_")
        r.pop("background_model")
        weights = tmp_path / "v2" / "detector.safetensors"
        tensors = {k: v for k, v in load_file(weights).items() if k != "calibration.scores"}
        save_file(tensors, weights, metadata={"format": "pt"})
        r["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()

    # a complexity detector saved before the weight (version 4) added the whole code length: it loads with mu = 1
    serra = aevb.AnomalyDetector(score="complexity", complexity_weight=1.0, random_state=2, **TINY).fit(x)
    serra.save(tmp_path / "serra")

    def version_4(r):
        r["version"] = 4
        r["params"].pop("complexity_weight")

    v4 = aevb.AnomalyDetector.load(variant("v4", tmp_path / "serra", version_4))
    assert (v4.score_, v4.complexity_weight) == ("complexity", 1.0)
    np.testing.assert_array_equal(v4.score_samples(x_test), serra.score_samples(x_test))
    np.testing.assert_array_equal(v4.p_values(x_test), serra.p_values(x_test))

    old = aevb.AnomalyDetector.load(variant("v2", tmp_path / "plain", version_2))
    assert old.random_state == 2 and "seed" not in old.get_params() and old.image_shape_ is None
    assert old.calibration_scores_ is None
    np.testing.assert_array_equal(old.score_samples(x_test), plain.score_samples(x_test))
    with pytest.raises(InputError, match="saved before aevb kept its training scores; fit it again"):
        old.p_values(x_test)
    np.save(tmp_path / "test.npy", x_test)
    scored = aevb_main(tmp_path, ["detect", "score", "v2", "test.npy", "--out", "old.csv"])
    assert scored.returncode == 0, scored.stderr
    assert (tmp_path / "old.csv").read_text().splitlines()[0] == "score,decision,label"  # no p_value column
    old.save(tmp_path / "resaved")  # and it saves again as it is, without training scores
    assert aevb.AnomalyDetector.load(tmp_path / "resaved").calibration_scores_ is None


# --- random_state: scikit-learn's name for the seed ------------------------------------------------------


def test_random_state_is_a_parameter_that_clone_and_set_params_carry(data_5d):
    a, a_test = data_5d
    det = aevb.AnomalyDetector(random_state=7, **TINY)
    assert det.get_params()["random_state"] == 7 and "seed" not in det.get_params()
    with pytest.raises(TypeError):
        aevb.AnomalyDetector(seed=7)
    copy = clone(det)
    assert copy.random_state == 7 and copy.get_params() == det.get_params()
    fitted = det.fit(a)
    again = clone(fitted)
    assert again.get_params() == fitted.get_params() and not hasattr(again, "model_")
    np.testing.assert_array_equal(again.fit(a).score_samples(a_test), fitted.score_samples(a_test))  # same seed
    other = clone(fitted).set_params(random_state=8)
    assert other.random_state == 8 and other.get_params()["random_state"] == 8
    assert not np.array_equal(other.fit(a).score_samples(a_test), fitted.score_samples(a_test))


# --- aevb detect ------------------------------------------------------------------------------------------


def test_cli_fits_and_scores_with_each_new_score_and_writes_p_values(tmp_path, images):
    x, x_test = images
    np.save(tmp_path / "train.npy", x.astype(np.float32))
    np.save(tmp_path / "test.npy", x_test.astype(np.float32))
    tiny = ["--hidden", 16, "--latent-dim", 2, "--epochs", 3, "--n-samples", 5, "--refits", 0, "--no-progress"]
    fit = aevb_main(tmp_path, ["detect", "fit", "train.npy", "--out", "c", "--score", "complexity", *tiny])
    assert fit.returncode == 0, fit.stderr
    assert "score complexity" in fit.stdout and "image shape 8x8; code length weight 0.1" in fit.stdout
    weighted = ["detect", "fit", "train.npy", "--out", "a", "--score", "complexity", "--complexity-weight", 0.5]
    assert aevb_main(tmp_path, [*weighted, *tiny]).returncode == 0
    assert (lambda d: (d.score, d.score_, d.complexity_weight))(aevb.AnomalyDetector.load(tmp_path / "a")) == (
        "complexity",
        "complexity",
        0.5,
    )
    shaped = ["detect", "fit", "train.npy", "--out", "c4", "--score", "complexity", "--image-shape", "4x16", *tiny]
    assert aevb_main(tmp_path, shaped).returncode == 0
    assert aevb.AnomalyDetector.load(tmp_path / "c4").image_shape_ == (4, 16)
    ratio = ["detect", "fit", "train.npy", "--out", "r", "--score", "likelihood-ratio", "--background-noise", 0.1]
    assert aevb_main(tmp_path, [*ratio, "--random-state", 5, *tiny]).returncode == 0
    assert aevb_main(tmp_path, [*ratio[:4], "r5", *ratio[5:], "--seed", 5, *tiny]).returncode == 0  # the old name
    for name in ("c", "r"):
        score = aevb_main(tmp_path, ["detect", "score", name, "test.npy", "--out", f"{name}.csv"])
        assert score.returncode == 0, score.stderr
        det = aevb.AnomalyDetector.load(tmp_path / name)
        assert (tmp_path / f"{name}.csv").read_text().splitlines()[0] == "score,decision,label,p_value"
        table = np.loadtxt(tmp_path / f"{name}.csv", delimiter=",", skiprows=1)
        x32 = x_test.astype(np.float32)
        np.testing.assert_allclose(table[:, 0], det.score_samples(x32), rtol=1e-6)
        np.testing.assert_allclose(table[:, 3], det.p_values(x32), rtol=1e-8)  # a .csv holds 9 digits
    r, r5 = (aevb.AnomalyDetector.load(tmp_path / n) for n in ("r", "r5"))
    assert r.random_state == r5.random_state == 5 and r.background_noise == 0.1
    np.testing.assert_array_equal(r.score_samples(x_test), r5.score_samples(x_test))

    bad = {
        "shape text": (["--image-shape", "8by8"], 2, "'8by8' is not 'auto', 'none' or HxW"),
        "shape size": (["--score", "complexity", "--image-shape", "5x5"], 1, "does not hold rows of 64 columns"),
        "noise": (["--score", "likelihood-ratio", "--background-noise", "1"], 2, "1 must be in (0, 1)"),
        "score": (["--score", "typicality"], 2, "invalid choice: 'typicality'"),
        "weight": (["--complexity-weight", "-1"], 2, "-1 must be in [0, inf)"),
        "weight text": (["--complexity-weight", "a lot"], 2, "'a lot' is not a number"),
    }
    for i, (name, (extra, code, message)) in enumerate(bad.items()):
        r = aevb_main(tmp_path, ["detect", "fit", "train.npy", "--out", f"bad{i}", *extra, *tiny])
        assert r.returncode == code, (name, r.stderr)
        one_line_error(r, message)
        assert not (tmp_path / f"bad{i}").exists() or not any((tmp_path / f"bad{i}").iterdir()), name
    help_text = aevb_main(tmp_path, ["detect", "fit", "--help"]).stdout
    for fragment in ("complexity", "likelihood-ratio", "--image-shape", "--background-noise", "--random-state"):
        assert fragment in help_text, fragment
    assert "(default: auto)" in help_text and "(default: 0.1)" in " ".join(help_text.split())
