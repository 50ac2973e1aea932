"""aevb.AnomalyDetector: scikit-learn conventions, the scores against their definitions, a detection
floor on a problem with known anomalies, persistence, every bad input, and `aevb detect` end to end."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

import aevb
from aevb.anomaly import InputError, default_size
from aevb.anomaly.scores import FITTED, NEEDS
from aevb.evaluate import example_noise
from aevb.objectives import gaussian_kl
from aevb_process import aevb_main

FAST = {"epochs": 40, "n_samples": 20}


def manifold_data(n_normal: int, n_anomal: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Normal rows on a noisy 1-D curve in 5-D (scaled by 10 and shifted, so standardising matters);
    anomalies uniform in the curve's bounding box. Returns (X, y) with y = 1 for anomalies."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(-1, 1, n_normal)
    curve = np.stack([t, t**2, np.sin(3 * t), np.cos(2 * t), t**3], axis=1) + 0.03 * rng.standard_normal((n_normal, 5))
    lo, hi = curve.min(0), curve.max(0)
    anomalies = rng.uniform(lo, hi, (n_anomal, 5))
    x = np.concatenate([curve, anomalies]) * np.array([10, 1, 5, 0.1, 3]) + np.array([100, -5, 0, 7, 1])
    return x, np.r_[np.zeros(n_normal), np.ones(n_anomal)].astype(int)


@pytest.fixture(scope="module")
def data():
    x_train, _ = manifold_data(400, 0, seed=0)
    x_test, y_test = manifold_data(200, 40, seed=1)
    return x_train, x_test, y_test


@pytest.fixture(scope="module")
def fitted(data):
    return aevb.AnomalyDetector(contamination=0.1, **FAST).fit(data[0])


# --- scikit-learn conventions ----------------------------------------------------------------------


def test_init_stores_parameters_and_clone_gives_an_unfitted_copy(fitted):
    det = aevb.AnomalyDetector(score="elbo", contamination=0.05, hidden=(8,), random_state=3)
    assert det.get_params()["hidden"] == (8,) and det.get_params()["contamination"] == 0.05
    assert not any(k.endswith("_") for k in vars(det))  # __init__ does no work
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params() and not hasattr(copy, "model_")


def test_fit_returns_self_and_sets_the_fitted_attributes(data, fitted):
    assert isinstance(fitted.model_, aevb.VAE) and not fitted.model_.training
    assert fitted.n_features_in_ == 5 and fitted.score_ == "log-likelihood"
    # centred and scaled on the training rows only: median and IQR (robust, the default) or mean and std
    q1, median, q3 = np.percentile(data[0], [25, 50, 75], axis=0)
    np.testing.assert_allclose(fitted.scaler_.center_, median)
    np.testing.assert_allclose(fitted.scaler_.scale_, q3 - q1)
    flat = np.c_[data[0][:, :1], np.r_[np.zeros(390), np.arange(1.0, 11.0)]]  # IQR 0: only centred
    scaler = aevb.AnomalyDetector(epochs=1, n_samples=2).fit(flat).scaler_
    assert scaler.scale_[1] == 1.0 and scaler.center_[1] == 0.0
    standard = aevb.AnomalyDetector(standardize="standard", epochs=1, n_samples=2).fit(data[0]).scaler_
    np.testing.assert_allclose(standard.mean_, data[0].mean(0))
    np.testing.assert_allclose(standard.scale_, data[0].std(0))
    assert fitted.size_ == {**default_size(400, 5), "epochs": 40}
    det = aevb.AnomalyDetector(epochs=1, n_samples=2)
    assert det.fit(data[0]) is det


def test_default_size_rule():
    assert default_size(300, 6) == {"hidden": (32, 32), "latent_dim": 2, "batch_size": 32, "epochs": 50}
    assert default_size(1400, 6)["epochs"] == 46  # ceil(2000 * 32 / 1400): about 2000 steps
    assert default_size(300_000, 166) == {"hidden": (256, 256), "latent_dim": 16, "batch_size": 256, "epochs": 10}
    assert default_size(5000, 36) == {"hidden": (128, 128), "latent_dim": 9, "batch_size": 100, "epochs": 40}


def test_default_size_rule_for_images():
    """About 6000 steps in 10 to 120 passes where the rows are images; the architecture and batch as on a table."""
    table = default_size(2000, 784)
    assert table == {"hidden": (256, 256), "latent_dim": 16, "batch_size": 40, "epochs": 40}  # 2000 steps
    assert default_size(2000, 784, images=True) == {**table, "epochs": 120}  # the benchmark's 2,000 images
    assert default_size(45_012, 784, images=True)["epochs"] == 35  # ceil(6000 * 256 / 45012)
    assert default_size(45_012, 784)["epochs"] == 12
    assert default_size(1000, 64, images=True)["epochs"] == 120  # capped: 192 passes would be 6000 steps
    assert default_size(2_000_000, 784, images=True)["epochs"] == 10  # at least 10 passes


def test_the_image_rule_is_what_the_detector_fits_on_images():
    """A fit on rows that are images (found or named) takes the image rule, on a table or image_shape=None the
    table's; a given epochs wins over either."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (100, 64)) ** 2  # 8 x 8 grey images in [0, 1]
    fast = {"hidden": (8,), "latent_dim": 2, "n_samples": 2, "refits": 0}
    rule = default_size(100, 64, images=True)
    assert rule["epochs"] == 120 and default_size(100, 64)["epochs"] == 50
    assert aevb.AnomalyDetector(**fast).fit(images).size_ == {**rule, "hidden": (8,), "latent_dim": 2}
    assert aevb.AnomalyDetector(**fast, image_shape=(4, 16)).fit(images).size_["epochs"] == 120  # named
    assert aevb.AnomalyDetector(**fast, image_shape=None).fit(images).size_["epochs"] == 50
    assert aevb.AnomalyDetector(**fast, epochs=3).fit(images).size_["epochs"] == 3


def test_offset_from_contamination_and_signs(data, fitted):
    x_train, x_test, _ = data
    s = fitted.train_scores_
    assert fitted.offset_ == pytest.approx(np.percentile(s, 10))
    assert np.mean(s < fitted.offset_) == pytest.approx(0.1, abs=0.01)
    np.testing.assert_array_equal(fitted.decision_function(x_test), fitted.score_samples(x_test) - fitted.offset_)
    pred = fitted.predict(x_test)
    assert set(np.unique(pred)) == {-1, 1}
    np.testing.assert_array_equal(pred == -1, fitted.decision_function(x_test) < 0)
    auto = clone(fitted).set_params(contamination="auto").fit(x_train)
    q1, q3 = np.percentile(auto.train_scores_, [25, 75])
    assert auto.offset_ == pytest.approx(q1 - 1.5 * (q3 - q1))
    np.testing.assert_array_equal(auto.train_scores_, s)  # contamination moves the offset only


def test_scores_are_repeatable_and_match_their_definitions(data, fitted):
    x_test = data[1]
    a, b = fitted.score_samples(x_test), fitted.score_samples(x_test)
    np.testing.assert_array_equal(a, b)
    x = torch.from_numpy(fitted.scaler_.transform(x_test).astype(np.float32))
    np.testing.assert_allclose(
        a, aevb.log_likelihood(fitted.model_, x, k=20, seed=0, shared_noise=True).double().numpy(), atol=1e-5
    )
    # by hand, every row with the same 20 draws eps (the seed's): z = mu + sigma eps ~ q(z|x), and log p(x) is
    # estimated by log (1/k) sum_l p(x|z_l) p(z_l) / q(z_l|x) (Burda et al., 2016), the densities from torch
    with torch.no_grad():
        q = fitted.model_.encode(x)
        eps = example_noise(0, 0, 0, (20, q.mean.shape[1])).unsqueeze(1)  # (20, 1, Dz): every row the same
        z = q.mean + q.stddev * eps
        p_z = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        q_z = torch.distributions.Normal(q.mean, q.stddev).log_prob(z).sum(-1)
        log_w = fitted.model_.decode(z).log_prob(x) + p_z - q_z
        by_hand = (torch.logsumexp(log_w, 0) - math.log(20)).double().numpy()
        # reconstruction probability: mean over the same 20 draws of log p(x|z)
        recon = fitted.model_.decode(z).log_prob(x).mean(0).double().numpy()
        kl = gaussian_kl(q).double().numpy()
    np.testing.assert_allclose(a, by_hand, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(fitted.scores(x_test, "reconstruction"), recon, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fitted.scores(x_test, "elbo"), recon - kl, rtol=1e-5, atol=1e-4)
    # the importance-sampled bound is above the ELBO on average (Burda et al., 2016)
    assert a.mean() > fitted.scores(x_test, "elbo").mean()


def test_a_rows_score_does_not_depend_on_the_rows_scored_with_it(data, fitted):
    # scikit-learn's sample-order and subset invariance: the noise is the seed's, the same for every row, so a row
    # scores the same alone, in another order or among other rows (with noise owned by the row's index, as before,
    # they differed by up to 5 nats on this model at k = 20)
    x_test = data[1]
    order = np.random.default_rng(0).permutation(len(x_test))
    for name in ("log-likelihood", "elbo", "reconstruction"):
        s = fitted.scores(x_test, name)
        np.testing.assert_allclose(fitted.scores(x_test[order], name), s[order], rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(fitted.scores(x_test[7:8], name), s[7:8], rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(fitted.scores(x_test[::3], name), s[::3], rtol=1e-6, atol=1e-5)
    single = np.concatenate([fitted.predict(x_test[i : i + 1]) for i in range(0, len(x_test), 10)])
    np.testing.assert_array_equal(single, fitted.predict(x_test)[::10])


def test_detects_the_known_anomalies(data, fitted):
    _, x_test, y_test = data
    # they need what a fit with them keeps
    fitted_with = {"likelihood-ratio", "latent-knn", "latent-lof", "latent-gmm", "combined"}
    assert {n for n in aevb.anomaly.SCORES if set(NEEDS.get(n, ())) & set(FITTED)} == fitted_with
    for name in (n for n in aevb.anomaly.SCORES if n not in fitted_with):
        auc = roc_auc_score(y_test, -fitted.scores(x_test, name))
        assert auc > 0.95, (name, auc)
    # the likelihood ratio has a test of its own (test_anomaly_scores.py); the local outlier factor, which compares
    # a row's neighbourhood with its neighbours', not its distance to them, ranks these global outliers less well
    for name, least in (("latent-knn", 0.95), ("latent-lof", 0.9), ("latent-gmm", 0.95), ("combined", 0.95)):
        auc = roc_auc_score(y_test, -clone(fitted).set_params(score=name).fit(data[0]).score_samples(x_test))
        assert auc > least, (name, auc)


def test_pipeline_and_dataframe(data):
    x_train, x_test, y_test = data
    pipe = make_pipeline(MinMaxScaler(), aevb.AnomalyDetector(**FAST)).fit(x_train)
    assert roc_auc_score(y_test, -pipe.decision_function(x_test)) > 0.9
    assert set(np.unique(pipe.predict(x_test))) <= {-1, 1}
    pd = pytest.importorskip("pandas", reason="pandas is not installed (pip install pandas)")
    cols = ["a", "b", "c", "d", "e"]
    df = pd.DataFrame(x_train, columns=cols)
    det = aevb.AnomalyDetector(epochs=2, n_samples=5).fit(df)
    assert list(det.feature_names_in_) == cols
    np.testing.assert_array_equal(det.score_samples(pd.DataFrame(x_test, columns=cols)), det.score_samples(x_test))
    with pytest.raises(InputError, match=r"columns .* differ from the fitted ones"):
        det.score_samples(pd.DataFrame(x_test, columns=cols[::-1]))
    with pytest.raises(InputError, match=r"non-numeric column\(s\) 'colour'"):
        aevb.AnomalyDetector().fit(df.assign(colour=["red"] * len(df)))


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x, message",
    [
        (np.array([[1.0, np.nan], [2.0, 3.0]]), r"contains NaN or inf \(1 values, the first at row 0, column 1\)"),
        (np.array([[1.0, 2.0], [np.inf, 3.0]]), r"contains NaN or inf"),
        (np.array([["a", "b"], ["c", "d"]]), r"is not numeric \(dtype <U1\)"),
        (np.arange(5.0), r"must be 2-D \(rows x features\), got shape \(5,\)"),
        (np.zeros((0, 3)), r"is empty: 0 sample\(s\) \(shape=\(0, 3\)\) while a minimum of 1 is required"),
        (np.zeros((3, 0)), r"is empty: 0 feature\(s\) \(shape=\(3, 0\)\) while a minimum of 1 is required"),
        (np.ones((3, 2), dtype=complex), r"X is complex \(dtype complex128\). Complex data not supported"),
        (np.array([[1.0, "a"], [2.0, 3.0]], dtype=object), r"X is not numeric \(dtype object: could not convert"),
        (np.zeros((1, 3)), r"X has 1 sample \(n_samples=1\); at least 2 rows are needed"),
        ([[1.0, 2.0], [3.0]], r"not a rectangular table"),
    ],
)
def test_bad_training_data(x, message):
    with pytest.raises(InputError, match=message):
        aevb.AnomalyDetector().fit(x)


def test_sparse_input_is_refused_and_numbers_held_as_objects_are_read_as_floats(data):
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(InputError, match=r"X is a sparse matrix: sparse input is not supported; pass a dense array"):
        aevb.AnomalyDetector().fit(sparse.csr_matrix(np.ones((3, 2))))
    x_train, x_test, _ = data
    det = aevb.AnomalyDetector(epochs=2, n_samples=5).fit(x_train)
    np.testing.assert_array_equal(
        aevb.AnomalyDetector(epochs=2, n_samples=5).fit(x_train.astype(object)).score_samples(x_test.astype(object)),
        det.score_samples(x_test),
    )


@pytest.mark.parametrize(
    "params, message",
    [
        ({"contamination": 0.7}, r"contamination must be 'auto' or a fraction in \(0, 0.5\]; got 0.7"),
        ({"score": "nll"}, r"score must be 'auto' or one of log-likelihood, elbo, reconstruction"),
        ({"complexity_weight": -0.1}, r"complexity_weight must be a finite number >= 0; got -0.1"),
        ({"complexity_weight": math.nan}, r"complexity_weight must be a finite number >= 0; got nan"),
        ({"complexity_weight": math.inf}, r"complexity_weight must be a finite number >= 0; got inf"),
        ({"complexity_weight": True}, r"complexity_weight must be a finite number >= 0; got True"),
        ({"complexity_weight": "0.1"}, r"complexity_weight must be a finite number >= 0; got '0.1'"),
        ({"likelihood": "zip"}, r"likelihood must be 'auto' or one of"),
        ({"refits": "many"}, r"refits must be 'auto' or an integer >= 0; got 'many'"),
        ({"refits": -1}, r"refits must be 'auto' or an integer >= 0; got -1"),
        ({"likelihood": "mixed"}, r"likelihood='mixed' needs columns"),
        ({"likelihood": "mixed", "columns": "poisson:3"}, r"names 3 columns; X has 2"),
        ({"columns": "poisson:2"}, r"columns is only for likelihood='mixed'"),
        ({"standardize": True}, r"standardize must be one of robust, standard or False; got True"),
        ({"n_samples": 0}, r"n_samples must be an integer >= 1"),
        ({"outlier_weight": 1.0}, r"outlier_weight must be in \(0, 1\); got 1.0"),
        ({"outlier_weight": 0}, r"outlier_weight must be in \(0, 1\); got 0"),
        ({"likelihood": "bernoulli"}, r"values outside \[0, 1\]"),
    ],
)
def test_bad_parameters(params, message):
    with pytest.raises(InputError, match=message):
        aevb.AnomalyDetector(**params).fit(np.array([[0.0, 2.0], [1.0, 3.0]]))


def test_auto_likelihood_and_refits_follow_the_rows():
    """Images (as image_shape finds or names them) fit the learned Gaussian once, tables the robust one with
    REFITS_DEFAULT refits: bitwise the scores of the same values given explicitly; the parameters stay "auto"."""
    from aevb.anomaly.concentration import REFITS_DEFAULT

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (120, 64)) ** 2  # 8 x 8 grey images in [0, 1]
    table = rng.standard_normal((120, 5))
    fast = {"epochs": 2, "n_samples": 5, "hidden": (16,), "latent_dim": 2}
    cases = [
        (images, {}, ("gaussian-learned", 0)),
        (images[:, :60], {"image_shape": (6, 10)}, ("gaussian-learned", 0)),  # named: images
        (images, {"image_shape": None}, ("gaussian-robust", REFITS_DEFAULT)),  # None: a table
        (table, {}, ("gaussian-robust", REFITS_DEFAULT)),
        (images, {"refits": 1}, ("gaussian-learned", 1)),  # only what is "auto" is resolved
        (table, {"likelihood": "gaussian-learned"}, ("gaussian-learned", REFITS_DEFAULT)),
    ]
    for x, kw, (likelihood, refits) in cases:
        auto = aevb.AnomalyDetector(**fast, **kw)
        assert {"likelihood": "auto", "refits": "auto", **kw}.items() <= clone(auto).get_params().items()
        auto.fit(x)
        assert (auto.likelihood_, auto.refits_) == (likelihood, refits), kw
        explicit = aevb.AnomalyDetector(**fast, **{**kw, "likelihood": likelihood, "refits": refits}).fit(x)
        np.testing.assert_array_equal(auto.score_samples(x), explicit.score_samples(x))
        assert auto.offset_ == explicit.offset_ and (auto.support_ == explicit.support_).all()
    assert auto.set_params(likelihood="auto").get_params()["likelihood"] == "auto"


def count_data(n_normal: int, n_anomal: int, seed: int, d: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts whose rates follow one latent t in [0, 1] (even columns 1 + 12t, odd ones 1 + 12(1 - t));
    anomalies draw every column's rate independently, off that curve. Returns (X, y), y = 1 for anomalies."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 1, (n_normal, 1))
    rates = np.concatenate(
        [1 + 12 * np.where(np.arange(d) % 2 == 0, t, 1 - t), 1 + 12 * rng.uniform(0, 1, (n_anomal, d))]
    )
    return rng.poisson(rates).astype(np.float64), np.r_[np.zeros(n_normal), np.ones(n_anomal)].astype(int)


@pytest.mark.slow
def test_poisson_scores_raw_counts_with_the_library_log_likelihood_and_finds_the_anomalies():
    x_train, _ = count_data(400, 0, seed=0)
    x_test, y_test = count_data(200, 40, seed=1)
    det = aevb.AnomalyDetector(likelihood="poisson", epochs=100, n_samples=20).fit(x_train)
    assert det.scaler_ is None  # counts are not standardised
    expected = aevb.log_likelihood(
        det.model_, torch.from_numpy(x_test.astype(np.float32)), k=20, seed=0, shared_noise=True
    )
    np.testing.assert_allclose(det.score_samples(x_test), expected.double().numpy(), atol=1e-5)
    assert roc_auc_score(y_test, -det.score_samples(x_test)) > 0.85
    with pytest.raises(InputError, match=r"column\(s\) 0..7 that are not counts"):
        det.score_samples(x_test + 0.5)


def test_mixed_standardises_only_the_gaussian_columns_and_round_trips(tmp_path):
    counts, _ = count_data(300, 0, seed=2, d=3)
    rng = np.random.default_rng(3)
    x = np.concatenate([100 + 10 * rng.standard_normal((300, 2)), counts, rng.integers(0, 4, (300, 1))], axis=1)
    det = aevb.AnomalyDetector(
        likelihood="mixed", columns="gaussian-learned:2,poisson:3,categorical4:1", epochs=3, n_samples=10
    ).fit(x)
    lo, median, hi = np.percentile(x[:, :2], [25, 50, 75], axis=0)
    np.testing.assert_allclose(det.scaler_.center_, np.r_[median, 0, 0, 0, 0])
    np.testing.assert_allclose(det.scaler_.scale_, np.r_[hi - lo, 1, 1, 1, 1])
    model_input = np.concatenate([(x[:, :2] - median) / (hi - lo), x[:, 2:]], axis=1)
    expected = aevb.log_likelihood(
        det.model_, torch.from_numpy(model_input.astype(np.float32)), k=10, seed=0, shared_noise=True
    )
    np.testing.assert_allclose(det.score_samples(x), expected.double().numpy(), rtol=1e-5, atol=1e-4)
    back = aevb.AnomalyDetector.load(det.save(tmp_path / "mixed"))
    assert back.get_params() == det.get_params()
    np.testing.assert_array_equal(back.score_samples(x), det.score_samples(x))
    with pytest.raises(InputError, match=r"column\(s\) 5..5 that are not class indices 0..3 \(categorical4\)"):
        back.score_samples(np.concatenate([x[:, :5], np.full((300, 1), 4.0)], axis=1))


def test_bad_scoring_input(fitted):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(InputError, match=r"X has 4 features, but AnomalyDetector is expecting 5 features as input"):
        fitted.score_samples(np.zeros((3, 4)))
    with pytest.raises(InputError, match=r"NaN or inf"):
        fitted.predict(np.full((2, 5), np.nan))
    with pytest.raises(NotFittedError, match="not fitted yet"):
        aevb.AnomalyDetector().score_samples(np.zeros((2, 5)))
    assert issubclass(InputError, aevb.DataError) and issubclass(InputError, ValueError)


# --- persistence --------------------------------------------------------------------------------


def test_save_load_round_trip_gives_identical_scores(tmp_path, data, fitted):
    x_test = data[1]
    fitted.save(tmp_path / "det")
    assert sorted(p.name for p in (tmp_path / "det").iterdir()) == ["detector.json", "detector.safetensors"]
    back = aevb.AnomalyDetector.load(tmp_path / "det")
    assert back.get_params() == fitted.get_params() and back.offset_ == fitted.offset_
    np.testing.assert_array_equal(back.score_samples(x_test), fitted.score_samples(x_test))
    np.testing.assert_array_equal(back.predict(x_test), fitted.predict(x_test))


def test_load_refuses_lying_files(tmp_path, fitted):
    good = tmp_path / "good"
    fitted.save(good)
    record = json.loads((good / "detector.json").read_text())

    def variant(name: str, change) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "detector.safetensors").write_bytes((good / "detector.safetensors").read_bytes())
        rec = json.loads(json.dumps(record))
        change(folder, rec)
        if not (folder / "detector.json").exists():
            (folder / "detector.json").write_text(json.dumps(rec))
        return folder

    cases = {
        "version": (lambda f, r: r.update(version=9), r"has version 9; this aevb reads versions 1 to 8"),
        "likelihood": (lambda f, r: r["fitted"].update(likelihood_="gaussian-learned"), r"is not the model's"),
        "scaler": (lambda f, r: r["fitted"].update(scaler="minmax"), r"scaler 'minmax' is not one of robust, standard"),
        "format": (lambda f, r: r.update(format="x"), r"is not an aevb anomaly detector"),
        "offset": (lambda f, r: r["fitted"].update(offset_=math.inf), r"offset_ is inf"),
        "features": (lambda f, r: r["fitted"].update(n_features_in_=7), r"n_features_in_ 7 .* does not match"),
        "json": (lambda f, r: (f / "detector.json").write_text("{"), r"detector.json is corrupt"),
        "swapped": (
            lambda f, r: (f / "detector.safetensors").write_bytes(b"\0" * 100),
            r"does not match detector.json \(SHA-256 differs\)",
        ),
        "truncated": (
            lambda f, r: (
                (f / "detector.safetensors").write_bytes((good / "detector.safetensors").read_bytes()[:200]),
                r.update(weights_sha256=__import__("hashlib").sha256(
                    (good / "detector.safetensors").read_bytes()[:200]).hexdigest()),
            ),
            r"corrupt or truncated",
        ),
    }  # fmt: skip
    for name, (change, message) in cases.items():
        with pytest.raises(aevb.CheckpointError, match=message):
            aevb.AnomalyDetector.load(variant(name, change))
    with pytest.raises(aevb.CheckpointError, match="no detector.json"):
        aevb.AnomalyDetector.load(tmp_path)
    # a version-1 file (standardize "auto" meant mean / std then, no scaler kind) still loads: (x - centre) / scale
    old = aevb.AnomalyDetector.load(
        variant(
            "v1",
            lambda f, r: (before_auto(r, 1), r["params"].update(standardize="auto"), r["fitted"].pop("scaler")),
        )
    )
    assert old.standardize == "standard" and (old.likelihood, old.likelihood_) == ("gaussian-robust",) * 2
    x = np.random.default_rng(0).standard_normal((20, 5))
    np.testing.assert_array_equal(old.score_samples(x), fitted.score_samples(x))
    # a record from before the concentration steps (no trim, no refits) was fitted once: it loads with refits=0
    once = aevb.AnomalyDetector.load(
        variant("no-refits", lambda f, r: (before_auto(r, 3), r["params"].pop("trim"), r["params"].pop("refits")))
    )
    assert once.refits == once.refits_ == 0 and once.trim == 0.05
    np.testing.assert_array_equal(once.score_samples(x), fitted.score_samples(x))


def before_auto(record: dict, version: int) -> None:
    """Turn a saved record into one of `version` < 4, before likelihood and refits "auto": its parameters hold
    the values fitted with, and there is no likelihood_ or refits_."""
    record["version"] = version
    record["params"].pop("complexity_weight")  # (added in version 5)
    for name in ("likelihood", "refits"):
        record["params"][name] = record["fitted"].pop(f"{name}_")


# --- the command line ----------------------------------------------------------------------------


def aevb_cmd(cwd: Path, *args) -> subprocess.CompletedProcess:
    """`aevb ...` through `aevb.cli.main` in this process (a subprocess each spent ~2 s importing torch)."""
    return aevb_main(cwd, list(args))


@pytest.mark.slow
def test_cli_fit_and_score_a_csv(tmp_path, data):
    x_train, x_test, y_test = data
    np.savetxt(tmp_path / "train.csv", x_train, delimiter=",", header="a,b,c,d,e", comments="")
    np.savetxt(tmp_path / "test.csv", x_test, delimiter=",")
    fit = aevb_cmd(tmp_path, "detect", "fit", "train.csv", "--out", "det", "--epochs", 40, "--n-samples", 20,
                   "--contamination", 0.1, "--no-progress")  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    assert "fitted on 400 rows x 5 features" in fit.stdout and "flags 40 training rows" in fit.stdout
    assert "2 refits, each without the 20 training rows scored lowest" in fit.stdout  # 5% of 400
    score = aevb_cmd(tmp_path, "detect", "score", "det", "test.csv", "--out", "scores.csv")
    assert score.returncode == 0, score.stderr
    table = np.loadtxt(tmp_path / "scores.csv", delimiter=",", skiprows=1)
    assert (tmp_path / "scores.csv").read_text().splitlines()[0] == "score,decision,label,p_value"
    assert table.shape == (len(x_test), 4)
    det = aevb.AnomalyDetector.load(tmp_path / "det")
    assert det.likelihood_ == det.model_.config.likelihood == "gaussian-robust"  # "auto" on a table
    assert det.model_.config.outlier_weight == 0.2 and (det.trim, det.refits, det.refits_) == (0.05, "auto", 2)
    x32 = x_test.astype(np.float32)  # user files are read as float32
    np.testing.assert_allclose(table[:, 0], det.score_samples(x32), rtol=1e-6)
    np.testing.assert_array_equal(table[:, 2], det.predict(x32))
    assert roc_auc_score(y_test, -table[:, 0]) > 0.95

    bad = {
        "missing": (["detect", "fit", "nope.csv", "--out", "d2"], 1, "nope.csv: no such file"),
        "exists": (["detect", "fit", "train.csv", "--out", "det"], 1, "det exists and is not an empty directory"),
        "contamination": (["detect", "fit", "train.csv", "--out", "d3", "--contamination", "2"], 2, "in (0, 0.5]"),
        "weight": (["detect", "fit", "train.csv", "--out", "d4", "--outlier-weight", "1"], 2, "1 must be in (0, 1)"),
        "trim": (["detect", "fit", "train.csv", "--out", "d5", "--trim", "0.5"], 2, "0.5 must be in [0, 0.5)"),
        "refits": (["detect", "fit", "train.csv", "--out", "d6", "--refits", "-1"], 2, "-1 must be >= 0"),
        "likelihood": (["detect", "fit", "train.csv", "--out", "d7", "--likelihood", "x"], 2, "invalid choice: 'x'"),
        "features": (
            ["detect", "score", "det", "train5.csv", "--out", "s.csv"],
            1,
            "train5.csv: X has 4 features, but AnomalyDetector is expecting 5 features as input",
        ),
        "no detector": (["detect", "score", "train.csv", "test.csv", "--out", "s.csv"], 1, "is not a saved detector"),
        "same file": (["detect", "score", "det", "test.csv", "--out", "test.csv"], 1, "is the input file"),
        "no labels": (["detect", "score", "det", "test.csv", "--out", "s.csv", "--anomaly-class", "1"], 1,
                      "--anomaly-class needs labels, and test.csv has none"),
        "lr": (["detect", "fit", "train.csv", "--out", "d8", "--lr", "inf"], 1, "lr must be a finite number > 0"),
        "split": (["detect", "score", "det", "test.csv", "--out", "s.csv", "--split", "valid"], 1,
                  "--split valid is for a built-in dataset; test.csv is a file"),
    }  # fmt: skip
    np.savetxt(tmp_path / "train5.csv", x_train[:, :4], delimiter=",")
    runs = {name: aevb_cmd(tmp_path, *argv) for name, (argv, _, _) in bad.items()}
    for name, (_, code, message) in bad.items():
        r = runs[name]
        assert r.returncode == code and message in r.stderr, (name, r.returncode, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, name
    assert not any((tmp_path / d).exists() for d in ("d2", "d3", "d4", "d5", "d6", "d7", "d8"))
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.slow
def test_cli_images_through_a_builtin_dataset(tmp_path):
    """digits without class 0 -> score the test split with 0 as the anomaly class (prints ROC-AUC)."""
    fit = aevb_cmd(tmp_path, "detect", "fit", "digits", "--exclude-class", 0, "--out", "d0", "--epochs", 30,
                   "--n-samples", 20, "--no-progress")  # fmt: skip
    assert fit.returncode == 0 and "fitted on 1174 rows x 64 features" in fit.stdout, fit.stderr
    # 8 x 8 images in [0, 1]: likelihood and refits "auto" give the learned Gaussian and one fit, as they do for
    # the same rows from a file (the rule is the detector's, not the dataset name's)
    det = aevb.AnomalyDetector.load(tmp_path / "d0")
    assert det.model_.config.likelihood == det.likelihood_ == "gaussian-learned" and det.refits_ == 0
    assert (det.likelihood, det.refits, det.image_shape_) == ("auto", "auto", (8, 8)) and "refits" not in fit.stdout
    x = aevb.load_dataset("digits").train.flatten(1).double().numpy()
    np.save(tmp_path / "digits.npy", x[:300])
    from_file = aevb_cmd(tmp_path, "detect", "fit", "digits.npy", "--out", "d1", "--epochs", 2, "--no-progress")
    assert from_file.returncode == 0, from_file.stderr
    assert aevb.AnomalyDetector.load(tmp_path / "d1").likelihood_ == "gaussian-learned"
    assert "refits" not in from_file.stdout
    score = aevb_cmd(tmp_path, "detect", "score", "d0", "digits", "--anomaly-class", 0, "--out", "s.npz")
    assert score.returncode == 0, score.stderr
    auc = float(score.stdout.split("as the anomaly:")[1])
    with np.load(tmp_path / "s.npz", allow_pickle=False) as f:
        assert f["score"].shape == (300,) and set(np.unique(f["label"])) <= {-1, 1}
    assert auc > 0.75
