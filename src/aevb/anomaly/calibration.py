"""Conformal p-values of anomaly scores against reference scores (higher score = more normal).

p(s) = (1 + #{reference scores <= s}) / (n + 1): the rank of s among the n reference scores, counted from
the anomalous end, with s itself counted as one of them. When s and the reference scores are exchangeable
(scores of rows from one distribution, none of them used to fit the model), P(p(s) <= alpha) <= alpha for
every alpha, and p(s) is uniform on {1/(n+1), ..., 1} up to ties (Vovk et al. 2005, conformal prediction).
"""

from __future__ import annotations

import numpy as np


def conformal_p_values(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(1 + #{reference <= s}) / (n + 1) for each s in `scores`, (m,) float64 in [1/(n+1), 1].

    `reference` (n,) must be sorted ascending (`np.sort`); ties count as at least as anomalous."""
    ranked = np.asarray(reference, dtype=np.float64)
    counts = np.searchsorted(ranked, np.asarray(scores, dtype=np.float64), side="right")
    return (1.0 + counts) / (len(ranked) + 1.0)
