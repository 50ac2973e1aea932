"""Classical density estimators on ADBench sets where aevb is not first: how far does a density get?

    python benchmarks/anomaly_densities.py 6_cardio 28_pendigits 18_Ionosphere 20_letter 23_mammography

For each set and seed 0..2 (the benchmark's stratified 70/30 split), the training part is standardised
and each estimator scores the test part; prints the mean ROC-AUC of: a full-covariance Gaussian
mixture with 1, 4 and 16 components (scikit-learn GaussianMixture, reg_covar 1e-3), the robust
Mahalanobis distance of the minimum covariance determinant (MinCovDet), and the distance to the 5th and
20th nearest training row. Cited in docs/benchmarks/anomaly.md (where aevb loses).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from sklearn.covariance import MinCovDet
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler


def normality_scores(a: np.ndarray, b: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Per estimator fitted on rows a (standardised), the scores of rows b: higher = more normal."""
    out = {}
    for k in (1, 4, 16):
        gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-3, random_state=seed).fit(a)
        out[f"gmm{k}"] = gmm.score_samples(b)
    out["mcd"] = -MinCovDet(random_state=seed).fit(a).mahalanobis(b)
    for k in (5, 20):
        dist, _ = NearestNeighbors(n_neighbors=k).fit(a).kneighbors(b)
        out[f"knn{k}"] = -dist[:, -1]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="+", metavar="NAME", help="ADBench file stems, e.g. 6_cardio")
    p.add_argument(
        "--adbench", default="../shared/data/adbench", help="folder of the .npz files (default: %(default)s)"
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default: %(default)s)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")  # MinCovDet warns about singular covariances on discrete features
    for name in args.names:
        data = np.load(Path(args.adbench) / f"{name}.npz", allow_pickle=False)
        x, y = data["X"].astype(np.float64), data["y"].astype(int)
        aucs: dict[str, list[float]] = {}
        for seed in range(args.seeds):
            xtr, xte, _, yte = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
            scaler = StandardScaler().fit(xtr)
            for method, s in normality_scores(scaler.transform(xtr), scaler.transform(xte), seed).items():
                aucs.setdefault(method, []).append(roc_auc_score(yte, -s))
        print(f"{name:16s} " + "  ".join(f"{m} {np.mean(v):.3f}" for m, v in aucs.items()), flush=True)


if __name__ == "__main__":
    main()
