"""scikit-learn's own conformance checks (`sklearn.utils.estimator_checks`) on `aevb.AnomalyDetector`: cloning,
parameters, input validation and its messages, fit idempotence, that a row's score does not depend on the rows
scored with it (sample-order and subset invariance), n_features_in_, pickling within a process, and the rest of
what scikit-learn asks of an outlier detector."""

from __future__ import annotations

import pytest
import sklearn
from sklearn.utils.estimator_checks import parametrize_with_checks

import aevb

if tuple(int(p) for p in sklearn.__version__.split(".")[:2]) < (1, 6):
    pytest.skip("expected_failed_checks needs scikit-learn >= 1.6", allow_module_level=True)

# `score` is the detector's parameter naming its anomaly score (score="combined", ...), as issue 20 asks. Three
# checks take any attribute called `score` for the estimator's score(X, y) method and call it, which fails on the
# string; the detector has no such method (nor has IsolationForest): pass `scoring=` to GridSearchCV. The third
# checks predict and decision_function before it reaches `score`.
SCORE_PARAMETER = "`score` is the parameter naming the anomaly score, not a score(X, y) method"
# The two invariance checks compare at a relative 1e-7, the precision of float64. The VAE computes in float32, where
# a row's score can move by one unit in the last place (about 1e-7 relative) with its position in the batch (the
# matrix kernels' blocking), and the order check draws an unseeded permutation: they pass or fail by chance. The
# invariance they check, to 1e-6, is test_anomaly.py's test_a_rows_score_does_not_depend_on_the_rows_scored_with_it
# (the detector's noise was the row index's, and a row's score moved by up to 5 nats with its position, before).
FLOAT32 = "float32: a row's score moves in its last bit with its position in the batch; checked to 1e-6 elsewhere"
EXPECTED_FAILED = {
    "check_fit_score_takes_y": SCORE_PARAMETER,
    "check_pipeline_consistency": SCORE_PARAMETER,
    "check_n_features_in_after_fitting": SCORE_PARAMETER,
    "check_methods_sample_order_invariance": FLOAT32,
    "check_methods_subset_invariance": FLOAT32,
}


@parametrize_with_checks(
    [aevb.AnomalyDetector(epochs=5, n_samples=10)], expected_failed_checks=lambda _: EXPECTED_FAILED
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
