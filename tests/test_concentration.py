"""The detector's concentration steps (`trim`, `refits`): refits on the training rows the previous model
scores highest leave the anomalies among the training rows out of the final model."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import aevb
from aevb.anomaly import InputError

SCALE, SHIFT = np.array([10, 1, 5, 0.1, 3]), np.array([100, -5, 0, 7, 1])


def curve_and_cluster(n_normal: int, n_anomal: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Normal rows on a noisy curve in 5-D (t in [-1, 1], noise 0.03); anomalies a looser cluster (noise 0.1)
    off the curve at t = 0.5, which a single fit learns as a small mode of its own. (X, y), y = 1 anomalies."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(-1, 1, (n_normal, 1))
    curve = np.hstack([t, t**2, np.sin(3 * t), np.cos(2 * t), t**3]) + 0.03 * rng.standard_normal((n_normal, 5))
    centre = np.array([0.5, 0.25, np.sin(1.5) + 0.8, np.cos(1.0), 0.125])
    cluster = centre + 0.1 * rng.standard_normal((n_anomal, 5))
    x = np.concatenate([curve, cluster]) * SCALE + SHIFT
    return x, np.r_[np.zeros(n_normal), np.ones(n_anomal)].astype(int)


FAST = {"epochs": 40, "n_samples": 20, "random_state": 1}


@pytest.fixture(scope="module")
def fits():
    x_train, y_train = curve_and_cluster(570, 30, seed=0)  # 5% anomalies, kept in the training rows
    x_test, y_test = curve_and_cluster(200, 40, seed=1)
    once = aevb.AnomalyDetector(refits=0, **FAST).fit(x_train)
    refitted = aevb.AnomalyDetector(trim=0.05, refits=2, **FAST).fit(x_train)
    return x_train, y_train, x_test, y_test, once, refitted


def test_the_support_is_the_rows_above_the_trim_quantile_and_leaves_the_cluster_out(fits):
    x_train, y_train, _, _, once, refitted = fits
    assert once.support_.all() and once.support_.shape == (600,)
    # the last refit saw the rows that the model before it scored at or above its 5% quantile: 570 of 600.
    # 30 rows left out at random would hold 1.5 of the 30 planted anomalies on average, and 8 or more with
    # probability 4e-5 (hypergeometric); here a third to a half (10 with the seed's noise, 12 with the rows' own)
    left_out = (~refitted.support_[y_train == 1]).sum()
    assert refitted.support_.sum() == 570 and left_out >= 8, left_out
    # the final model scores every training row; offset_ comes from those scores, as without refits
    q1, q3 = np.percentile(refitted.train_scores_, [25, 75])
    assert refitted.offset_ == pytest.approx(q1 - 1.5 * (q3 - q1))
    np.testing.assert_array_equal(refitted.train_scores_, refitted.score_samples(x_train))


def test_refits_rank_the_anomalies_of_the_training_cluster_lower(fits):
    _, _, x_test, y_test, once, refitted = fits
    auc_once = roc_auc_score(y_test, -once.score_samples(x_test))
    auc_refitted = roc_auc_score(y_test, -refitted.score_samples(x_test))
    assert auc_refitted > 0.96 and auc_refitted > auc_once + 0.02, (auc_once, auc_refitted)


def test_no_refit_when_refits_or_trim_is_zero(fits):
    x_train, _, x_test, _, once, _ = fits
    no_trim = aevb.AnomalyDetector(trim=0.0, refits=2, **FAST).fit(x_train)
    assert no_trim.support_.all()
    np.testing.assert_array_equal(no_trim.score_samples(x_test), once.score_samples(x_test))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"trim": 0.5}, r"trim must be a fraction in \[0, 0.5\); got 0.5"),
        ({"trim": -0.1}, r"trim must be a fraction in \[0, 0.5\); got -0.1"),
        ({"refits": -1}, r"refits must be 'auto' or an integer >= 0; got -1"),
        ({"refits": 1.5}, r"refits must be 'auto' or an integer >= 0; got 1.5"),
    ],
)
def test_bad_parameters(params, message):
    with pytest.raises(InputError, match=message):
        aevb.AnomalyDetector(**params).fit(np.array([[0.0, 2.0], [1.0, 3.0]]))


@pytest.mark.slow
def test_on_real_data_the_refits_leave_the_training_anomalies_out(shared_data):
    """ADBench satimage-2 (5,803 rows, 36 features, 1.2% anomalies), the benchmark's split for seed 0: a single
    fit ranks the test anomalies at ROC-AUC about 0.978; the refits leave every training anomaly out of the
    final model (about 0.9995)."""
    from sklearn.model_selection import train_test_split

    d = np.load(shared_data / "adbench" / "31_satimage-2.npz", allow_pickle=False)
    x, y = d["X"].astype(np.float64), d["y"].astype(int)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    refitted = aevb.AnomalyDetector(random_state=0, n_samples=20).fit(x_train)  # the defaults: trim 0.05, 2 refits
    once = aevb.AnomalyDetector(refits=0, random_state=0, n_samples=20).fit(x_train)
    assert (refitted.trim, refitted.refits_, refitted.likelihood_) == (0.05, 2, "gaussian-robust")
    # two refits, each without a random 5% of the rows, would keep about 90% of the 50 training anomalies; these
    # keep at most 15% (6 of 50 with the seed's noise for every row, 5 with each row's own noise before)
    assert refitted.support_[y_train == 1].mean() <= 0.15
    auc_refitted = roc_auc_score(y_test, -refitted.score_samples(x_test))
    auc_once = roc_auc_score(y_test, -once.score_samples(x_test))
    assert auc_refitted > 0.99 and auc_refitted > auc_once + 0.01, (auc_once, auc_refitted)
