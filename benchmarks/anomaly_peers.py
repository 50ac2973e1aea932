"""The detectors that benchmarks/anomaly.py compares aevb with: one registry, each peer a few lines.

A peer is `fit(x_train, seed) -> score`, where `score(x) -> (n,)` is an anomaly score (higher = more
anomalous) of the rows of x. Every peer is fitted without labels and keeps its library's defaults. PCA
and PyOD's classical detectors see standard-scaled features (mean and standard deviation of the
training part); IsolationForest and PyOD's VAE see the raw features (the VAE standardises them itself,
its `preprocessing=True` default). HBOS, COPOD, ECOD and MCD are invariant to that per-feature affine
map; KNN, LOF and PCA are not. PyOD is imported where used (the `bench` extra).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.preprocessing import StandardScaler

Score = Callable[[np.ndarray], np.ndarray]  # (n, d) -> (n,), higher = more anomalous
Peer = Callable[[np.ndarray, int], Score]  # (x_train, seed) -> score


def _pca(x_train: np.ndarray, seed: int) -> Score:
    scaler = StandardScaler().fit(x_train)
    pca = PCA(n_components=0.9, svd_solver="full", random_state=seed).fit(scaler.transform(x_train))

    def score(x):
        z = scaler.transform(x)
        return np.square(z - pca.inverse_transform(pca.transform(z))).sum(1)

    return score


def _isolation_forest(x_train: np.ndarray, seed: int) -> Score:
    iso = IsolationForest(random_state=seed).fit(x_train)
    return lambda x: -iso.score_samples(x)


def _pyod_vae(x_train: np.ndarray, seed: int) -> Score:
    from pyod.models.vae import VAE

    vae = VAE(random_state=seed, verbose=0).fit(x_train)  # standardises x itself
    return vae.decision_function


def _scaled_pyod(module: str, cls: str, seeded: bool = False) -> Peer:
    """A PyOD detector `pyod.models.<module>.<cls>` with its defaults, on standard-scaled features;
    seeded: it takes random_state (seeded for reproducibility; PyOD's default is None)."""

    def fit(x_train: np.ndarray, seed: int) -> Score:
        import importlib

        make = getattr(importlib.import_module(f"pyod.models.{module}"), cls)
        scaler = StandardScaler().fit(x_train)
        det = (make(random_state=seed) if seeded else make()).fit(scaler.transform(x_train))
        return lambda x: det.decision_function(scaler.transform(x))

    return fit


PEERS: dict[str, Peer] = {
    "PyOD VAE": _pyod_vae,
    "IsolationForest": _isolation_forest,
    "PCA": _pca,
    "MCD": _scaled_pyod("mcd", "MCD", seeded=True),
    "HBOS": _scaled_pyod("hbos", "HBOS"),
    "COPOD": _scaled_pyod("copod", "COPOD"),
    "ECOD": _scaled_pyod("ecod", "ECOD"),
    "KNN": _scaled_pyod("knn", "KNN"),
    "LOF": _scaled_pyod("lof", "LOF"),
}
NEEDS_PYOD = frozenset(PEERS) - {"IsolationForest", "PCA"}


def have_pyod() -> bool:
    try:
        import pyod  # noqa: F401
    except ImportError:
        return False
    return True
