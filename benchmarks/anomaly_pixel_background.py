"""Does an independent-pixel background fix the likelihood's blind spot on images? One-class-out MNIST or
Fashion-MNIST (the subsets of `benchmarks/anomaly.py images`), aevb's default detector, and the tempered
likelihood ratio

    s_lambda(x) = log p(x) - lambda * log p_0(x),

p_0 a Gaussian per pixel (the mean and variance of each rescaled training column, the variance floored at the
decoder's exp(logvar_min)), lambda = 0 the default score, lambda = 1 a full likelihood ratio against p_0. One
fit per held-out class gives every lambda, and for reference the ELBO, the reconstruction probability, minus the
ELBO's KL term, and typicality (Nalisnick et al. 2019): -|log p(x) - the median log p(x) of the training rows|,
two-sided, so that a row more probable than the training rows is flagged too. The same fit also gives the
tempered complexity correction (Serra et al. 2020)

    c_mu(x) = log p(x) + mu * L(x) ln 2,

L(x) the PNG code length in bits (`aevb.anomaly.png_code_length`), mu = 1 the detector's `score="complexity"`.

    OMP_NUM_THREADS=1 python benchmarks/anomaly_pixel_background.py --dataset mnist --seed 0

prints ROC-AUC per held-out class and the mean and minimum over the classes. An exploration of issue 20 (results
in docs/benchmarks/anomaly_notes.md), not a score of the detector.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from aevb.anomaly import AnomalyDetector, png_code_length
from aevb.anomaly.scores import complexity_corrected

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anomaly_images import class_name, image_rows, one_class_out_arguments, subsets  # noqa: E402

LAMBDAS = (0.0, 0.25, 0.5, 0.75, 1.0)
MUS = (0.1, 0.25, 0.5, 1.0)


def pixel_log_density(train: np.ndarray, rows: np.ndarray, logvar_min: float) -> np.ndarray:
    """log p_0(rows), (n,) nats: independent Gaussians per column with the training rows' mean and variance
    (at least exp(logvar_min))."""
    mu, var = train.mean(0), np.maximum(train.var(0), np.exp(logvar_min))
    return (-0.5 * (np.log(2 * np.pi * var) + (rows - mu) ** 2 / var)).sum(1)


def tempered_complexity(log_p: np.ndarray, rows: np.ndarray, mu: float, shape: tuple[int, int]) -> np.ndarray:
    """c_mu = log p(x) + mu * L(x) ln 2, (n,) nats, higher = more normal: L(x) the PNG code length of each row
    (an image of `shape`) in bits; mu = 1 is Serra et al.'s correction, the detector's `score="complexity"`."""
    return complexity_corrected(log_p, png_code_length(rows, shape), mu)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    one_class_out_arguments(p)
    args = p.parse_args(argv)
    x_all, y_all, x_test, y_test = image_rows(args.dataset, args.data_dir)
    names = ["ELBO", "recon. prob.", "-KL", "typicality"] + [f"lambda {lam:g}" for lam in LAMBDAS]
    names += [f"complexity {mu:g}" for mu in MUS]
    table = []
    for c in range(10):
        t = time.perf_counter()
        tr, te = subsets(y_all, y_test, c, args.seed, args.train_rows, args.test_rows)
        normal = (y_test[te] != c).astype(int)  # scores are higher for more normal rows
        det = AnomalyDetector(random_state=args.seed).fit(x_all[tr])
        rescaled = [det._tensor(a).double().numpy() for a in (x_all[tr], x_test[te])]
        log_p0 = pixel_log_density(*rescaled, det.logvar_min)
        log_p = det.score_samples(x_test[te])
        elbo, recon = det.scores(x_test[te], "elbo"), det.scores(x_test[te], "reconstruction")
        scores = [elbo, recon, elbo - recon, -np.abs(log_p - np.median(det.train_scores_))]
        scores += [log_p - lam * log_p0 for lam in LAMBDAS]
        scores += [tempered_complexity(log_p, x_test[te], mu, (28, 28)) for mu in MUS]
        table.append([roc_auc_score(normal, s) for s in scores])
        cells = "  ".join(f"{n} {a:.3f}" for n, a in zip(names, table[-1]))
        print(f"{class_name(args.dataset, c):>20s}  {time.perf_counter() - t:5.1f}s  {cells}", flush=True)
    a = np.array(table)
    print(f"{'mean':>28s}  " + "  ".join(f"{n} {v:.3f}" for n, v in zip(names, a.mean(0))))
    print(f"{'lowest class':>28s}  " + "  ".join(f"{n} {v:.3f}" for n, v in zip(names, a.min(0))))


if __name__ == "__main__":
    main()
