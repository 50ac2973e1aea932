"""Do the latent scores that help on images help on tables too? The 16 ADBench sets, the benchmark's stratified
70/30 splits, aevb's default detector on tables (log p(x), the robust Gaussian, 2 refits), one fit per split, and
scores of that fit (higher = more normal):

- log p(x), the default score on tables;
- the latent scores of the fitted model on the training rows it was last fitted to (`support_`): minus the mean
  distance of E[z|x] to the 5 nearest training codes (`latent knn`) and minus their log local outlier factor
  (`latent lof`), `aevb.anomaly.latent`;
- the same two on the scaled features themselves instead of the codes (`feature knn`, `feature lof`);
- classical detectors fitted to the same rows' scaled features (the eighth session of issue 20): the empirical-CDF
  tail score of ECOD (Li et al. 2022, PyOD's `ECOD`, `feature ecod`), minus the Mahalanobis distance under the
  minimum covariance determinant estimate (scikit-learn's `MinCovDet`, `feature mcd`) and IsolationForest's
  `score_samples` (`feature iforest`);
- sums of them, each first standardised by its training rows' median and interquartile range (`sum-z(...)`).

    OMP_NUM_THREADS=1 python benchmarks/anomaly_table_parts.py --adbench ../shared/data/adbench --seeds 0 1 2

prints the ROC-AUC of each score and sum per set (mean over the seeds) and the mean over the sets. An exploration of
issue 20 (results in docs/benchmarks/anomaly_notes.md), not a score of the detector.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

import aevb
from aevb.anomaly.latent import density_of, lof_score, nearest, reference_codes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anomaly import read_labelled  # noqa: E402
from anomaly_combined import robust_z  # noqa: E402

BASE = (
    "log p",
    "latent knn",
    "latent lof",
    "feature knn",
    "feature lof",
    "feature ecod",
    "feature mcd",
    "feature iforest",
)
SUMS = (
    ("log p", "latent knn"),
    ("log p", "latent lof"),
    ("log p", "latent knn", "latent lof"),
    ("log p", "log p", "latent knn", "latent lof"),
    ("log p", "feature knn"),
    ("log p", "feature lof"),
    ("log p", "feature knn", "feature lof"),
    # the eighth session: the classical detectors that win the sets aevb loses
    ("log p", "feature ecod"),
    ("log p", "feature mcd"),
    ("log p", "feature iforest"),
    ("log p", "feature ecod", "feature mcd"),
    ("log p", "feature knn", "feature ecod"),
    ("log p", "feature knn", "feature mcd"),
    ("log p", "feature knn", "feature ecod", "feature mcd"),
    ("log p", "log p", "feature knn", "feature ecod", "feature mcd"),
    ("log p", "feature knn", "feature ecod", "feature mcd", "feature iforest"),
)


def neighbour_scores(reference: torch.Tensor, rows: torch.Tensor) -> dict[str, np.ndarray]:
    """Minus the mean 5-nearest-neighbour distance ("knn") and minus the log local outlier factor ("lof") of the
    reference rows themselves, each without its own row ("/train"), and of `rows` ("/test") among `reference`.
    The reference rows' search among themselves serves their densities and their own scores."""
    own = nearest(reference, reference, exclude_self=True)
    density = density_of(*own)
    out = {}
    for part, (d, i) in (("train", own), ("test", nearest(reference, rows))):
        out[f"knn/{part}"], out[f"lof/{part}"] = -d.mean(1).numpy(), lof_score(density, d, i).numpy()
    return out


def classical_scores(train: np.ndarray, test: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """ECOD, MCD and IsolationForest fitted to `train` (the scaled support rows), each scoring `train` and `test`
    (higher = more normal)."""
    import warnings

    from pyod.models.ecod import ECOD
    from sklearn.covariance import MinCovDet
    from sklearn.ensemble import IsolationForest

    out = {}
    ecod = ECOD().fit(train)
    mcd = MinCovDet(random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular covariance on sets with constant columns (musk)
        mcd.fit(train)
    forest = IsolationForest(random_state=seed).fit(train)
    for part, rows in (("train", train), ("test", test)):
        out[f"feature ecod/{part}"] = -ecod.decision_function(rows)
        out[f"feature mcd/{part}"] = -np.sqrt(mcd.mahalanobis(rows))
        out[f"feature iforest/{part}"] = forest.score_samples(rows)
    return out


def job(args: tuple[str, int]) -> tuple[str, int, dict[str, float], float]:
    path, seed = args
    torch.set_num_threads(1)
    x, y = read_labelled(Path(path))
    xtr, xte, _, yte = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
    t = time.perf_counter()
    det = aevb.AnomalyDetector(random_state=seed).fit(xtr)
    fit_s = time.perf_counter() - t
    support = xtr[det.support_]
    scores = {}
    for part, rows in (("train", support), ("test", xte)):
        scores[f"log p/{part}"] = det.scores(rows, "log-likelihood")
    feats = {part: det._tensor(rows) for part, rows in (("train", support), ("test", xte))}
    codes = {part: reference_codes(det.model_, v) for part, v in feats.items()}
    for space, v in (("latent", codes), ("feature", feats)):
        found = neighbour_scores(v["train"].double(), v["test"].double())
        scores.update({f"{space} {name}": values for name, values in found.items()})
    scores.update(classical_scores(feats["train"].double().numpy(), feats["test"].double().numpy(), seed))
    aucs = {name: float(roc_auc_score(yte, -scores[f"{name}/test"])) for name in BASE}
    for names in SUMS:
        total = sum(robust_z(scores[f"{n}/train"], scores[f"{n}/test"]) for n in names)
        aucs[f"sum-z({', '.join(names)})"] = float(roc_auc_score(yte, -total))
    return Path(path).stem, seed, aucs, fit_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--adbench", default="../shared/data/adbench", help="folder of the ADBench .npz files")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="split seeds (default: 0 1 2)")
    p.add_argument("--workers", type=int, default=2, help="processes (default: 2)")
    p.add_argument("--only", nargs="+", help="these sets only (file stems, e.g. 6_cardio; default: all 16)")
    args = p.parse_args()
    files = sorted(Path(args.adbench).glob("*.npz"), key=lambda f: int(f.name.split("_")[0]))
    files = [f for f in files if args.only is None or f.stem in args.only]
    jobs = [(str(f), s) for f in files for s in args.seeds]
    table: dict[str, dict[str, list[float]]] = {}
    fits = []
    with ProcessPoolExecutor(args.workers) as pool:
        for name, _, aucs, fit_s in pool.map(job, jobs):
            for method, auc in aucs.items():
                table.setdefault(method, {}).setdefault(name, []).append(auc)
            fits.append(fit_s)
    sets = [f.stem for f in files]
    print(f"seeds {args.seeds}; mean fit {np.mean(fits):.1f} s; ROC-AUC, mean over the seeds")
    print(f"{'score':64s}" + "".join(f"{s.split('_', 1)[1][:7]:>8s}" for s in sets) + "    mean")
    for method, per_set in table.items():
        values = [np.mean(per_set[s]) for s in sets]
        print(f"{method:64s}" + "".join(f"{v:8.3f}" for v in values) + f"{np.mean(values):8.3f}")


if __name__ == "__main__":
    main()
