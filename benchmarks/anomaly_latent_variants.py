"""Other latent-space scores from the codes that `benchmarks/anomaly_combined.py --save` keeps: which density or
distance of the posterior means E[z|x] adds most to the combined image score? An exploration of issue 20 (results in
docs/benchmarks/anomaly_notes.md, "A mixture density in the latent space"), not a score of the detector.

For each held-out class of the saved file, from the training and test codes (higher = more normal):

- `gmm K`: the log density under a mixture of K full-covariance Gaussians fitted to the training codes
  (`aevb.anomaly.mixture`, seeded by --seed); `gmm 10 diag`: the same with diagonal covariances (scikit-learn);
- `white knn`, `white lof`: the library's latent distance and outlier factor (5 neighbours) on the codes whitened
  by the training codes' covariance (directions with under 1% of the largest variance dropped);
- `kde`: the log of a Gaussian kernel density with the training codes' median 5-neighbour distance as bandwidth;
- `knn 10`, `lof 10`: the distance and outlier factor with 10 neighbours;

each alone, added to the four parts of the combined score of persistence version 7 (log p, c 1, latent knn,
latent lof 5, as saved) after standardising by the training median and IQR (`4 + NAME`), and a few sums in place
of parts. Prints ROC-AUC per held-out class, the mean and the lowest.

    OMP_NUM_THREADS=1 python benchmarks/anomaly_latent_variants.py comb_mnist_s0.npz --seed 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture

from aevb.anomaly.latent import knn_distance, local_density, lof_score, nearest
from aevb.anomaly.mixture import REGULARISATION, fit_mixture, log_density

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anomaly_combined import robust_z  # noqa: E402

FOUR = ("log p", "c 1", "latent knn", "latent lof 5")  # the combined score of persistence version 7, as saved


def gmm(train: np.ndarray, test: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    packed = fit_mixture(torch.from_numpy(train), k, seed)
    return tuple(log_density(packed, torch.from_numpy(a)).numpy() for a in (train, test))


def gmm_diagonal(train: np.ndarray, test: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    g = GaussianMixture(k, covariance_type="diag", reg_covar=REGULARISATION, random_state=seed).fit(train)
    return g.score_samples(train), g.score_samples(test)


def whitened(train: np.ndarray, test: np.ndarray, floor: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    w, v = np.linalg.eigh(np.cov(train, rowvar=False))
    keep = w > floor * w.max()
    project = v[:, keep] / np.sqrt(w[keep])
    centre = train.mean(0)
    return (train - centre) @ project, (test - centre) @ project


def knn(train: np.ndarray, test: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    t, e = torch.from_numpy(train), torch.from_numpy(test)
    return -knn_distance(t, t, k, True).numpy(), -knn_distance(t, e, k).numpy()


def lof(train: np.ndarray, test: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    t, e = torch.from_numpy(train), torch.from_numpy(test)
    density = local_density(t, k)
    return lof_score(density, *nearest(t, t, k, True)).numpy(), lof_score(density, *nearest(t, e, k)).numpy()


def kde(train: np.ndarray, test: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    t = torch.from_numpy(train)
    h = knn_distance(t, t, k, True).median().item()

    def log_kernel_sum(rows: torch.Tensor, own: bool) -> np.ndarray:
        d2 = torch.cdist(rows, t).square()
        if own:
            d2.fill_diagonal_(float("inf"))
        return torch.logsumexp(-d2 / (2 * h * h), 1).numpy()

    return log_kernel_sum(t, True), log_kernel_sum(torch.from_numpy(test), False)


def variants(train: np.ndarray, test: np.ndarray, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    white_train, white_test = whitened(train, test)
    return {
        "gmm 10": gmm(train, test, 10, seed),
        "gmm 20": gmm(train, test, 20, seed),
        "gmm 10 diag": gmm_diagonal(train, test, 10, seed),
        "white knn": knn(white_train, white_test),
        "white lof": lof(white_train, white_test),
        "kde": kde(train, test),
        "knn 10": knn(train, test, 10),
        "lof 10": lof(train, test, 10),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("saved", help="an .npz file of benchmarks/anomaly_combined.py --save")
    p.add_argument("--seed", type=int, default=0, help="seeds the mixtures (default: %(default)s)")
    args = p.parse_args(argv)
    with np.load(args.saved) as f:
        saved = dict(f)
    table: dict[str, list[float]] = {}
    for c in sorted({int(k.split("/")[0]) for k in saved}):
        train, test = (saved[f"{c}/codes/{part}"].astype(np.float64) for part in ("train", "test"))
        parts = {n: (saved[f"{c}/{n}/train"], saved[f"{c}/{n}/test"]) for n in FOUR}
        new = variants(train, test, args.seed)
        parts.update(new)
        sums = {name: [name] for name in new}
        sums["4 parts (version 7)"] = list(FOUR)
        sums.update({f"4 + {name}": [*FOUR, name] for name in new})
        sums["log p, c 1, gmm 10, latent lof 5"] = ["log p", "c 1", "gmm 10", "latent lof 5"]
        sums["log p, c 1, white knn, white lof"] = ["log p", "c 1", "white knn", "white lof"]
        sums["log p, c 1, kde, latent lof 5"] = ["log p", "c 1", "kde", "latent lof 5"]
        for name, names in sums.items():
            score = sum(robust_z(*parts[n]) for n in names)
            table.setdefault(name, []).append(roc_auc_score(saved[f"{c}/normal"], score))
    for name, aucs in table.items():
        print(f"{name:36s}" + "".join(f"{a:7.3f}" for a in aucs) + f"{np.mean(aucs):8.3f}{np.min(aucs):8.3f}")


if __name__ == "__main__":
    main()
