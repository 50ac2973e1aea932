"""Concentration steps: refit the detector's VAE without the training rows its previous fit finds least
probable, so that the anomalies among the training rows do not shape the final model.

This is the C-step of the minimum covariance determinant estimator (Rousseeuw & Van Driessen, 1999,
"A fast algorithm for the minimum covariance determinant estimator"), with a VAE in place of the
Gaussian: fit on a subset, keep the rows the fit scores highest, refit on them. A single fit on
contaminated rows learns the anomalies as a small mode of their own when they cluster (ADBench's
satimage-2, pendigits, optdigits); each refit starts afresh from the same initialisation and never
sees the rows left out, so that mode is not learned. Measured in docs/benchmarks/anomaly.md.
"""

from __future__ import annotations

import numpy as np

# The default: two refits, each without the 5% of the training rows the previous model scores lowest.
TRIM_DEFAULT, REFITS_DEFAULT = 0.05, 2


def support(scores: np.ndarray, trim: float) -> np.ndarray:
    """(n,) bool: the rows whose score (higher = more normal) is at or above the `trim`-quantile of `scores`."""
    return scores >= np.quantile(scores, trim)
