"""Can scores that fail on different held-out classes be combined into one image score? One-class-out MNIST or
Fashion-MNIST (the subsets of `benchmarks/anomaly.py images`), aevb's default detector, one fit per held-out
class, and scores of that fit (higher = more normal):

- log p(x) and the tempered complexity correction c_mu(x) = log p(x) + mu L(x) ln 2 (L the PNG code length
  in bits; mu = 0.1 the default score, mu = 1 Serra et al.'s): log p(x) fails on simple held-out classes
  (MNIST digit 1), c_1 on complex ones;
- the latent codes: minus the mean Euclidean distance of a row's posterior mean to its 5 nearest training
  posterior means (`latent knn`, `aevb.anomaly.latent`; `latent knn 1` and `latent knn 20` with 1 and 20),
  minus its Mahalanobis distance to the training posterior means (`latent maha`), and minus the log local outlier
  factor among them with 5 and 20 neighbours (`latent lof 5`, `latent lof 20`; the library's `latent-lof` is the
  first), and the log density of the posterior mean under a Gaussian mixture of 10 or 20 full-covariance
  components fitted to the training posterior means (`latent gmm 10`, `latent gmm 20`; the library's `latent-gmm`
  is the second; fitted with the seed, and computed from the saved codes where a file --save wrote before them
  lacks them);
- the likelihood ratio against the background VAE (`likelihood ratio`; the detector is fitted with
  score="likelihood-ratio", whose model is the default's: the background has a seed of its own);
- combinations of two to five of them, each score first standardised by its training rows' median and
  interquartile range (z): `sum-z(a, b, ...)` adds them (a part named twice counts twice), `min-z(...)` takes the
  smallest (a row is as anomalous as its most anomalous test), `fisher(...)` adds the logs of the conformal
  p-values against the training rows' scores (`aevb.anomaly.calibration.conformal_p_values`).

    OMP_NUM_THREADS=1 python benchmarks/anomaly_combined.py --dataset mnist --seed 0 --save scores.npz

prints ROC-AUC per held-out class and the mean and minimum over the classes, and saves every base score of
every class (training and test rows); `--table scores.npz --seed S` prints the table again from that file without
fitting the VAEs (S seeds the latent mixtures where the file lacks them). An exploration of issue 20 (results in
docs/benchmarks/anomaly_notes.md), not a score of the detector.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from aevb.anomaly import AnomalyDetector, png_code_length
from aevb.anomaly.calibration import conformal_p_values
from aevb.anomaly.complexity import complexity_corrected
from aevb.anomaly.latent import NEIGHBOURS_DEFAULT, knn_distance, local_density, lof_score, nearest, reference_codes
from aevb.anomaly.mixture import fit_mixture, log_density

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anomaly import parse_setting  # noqa: E402
from anomaly_images import class_name, image_rows, one_class_out_arguments, subsets  # noqa: E402


def posterior_means(det: AnomalyDetector, rows: np.ndarray) -> torch.Tensor:
    """The fitted model's posterior means E[z|x] of `rows`, (n, Dz) float32 (the detector's latent reference)."""
    return reference_codes(det.model_, det._tensor(rows))


def latent_mahalanobis(train: torch.Tensor, codes: torch.Tensor) -> np.ndarray:
    """Minus the Mahalanobis distance of each code to the training codes' mean and covariance, (n,)."""
    train, codes = train.double().numpy(), codes.double().numpy()
    centred = codes - train.mean(0)
    precision = np.linalg.pinv(np.cov(train, rowvar=False))
    return -np.sqrt(np.einsum("ni,ij,nj->n", centred, precision, centred))


def latent_lof(train: torch.Tensor, codes: torch.Tensor, k: int, own: bool) -> np.ndarray:
    """Minus the log local outlier factor of each code among the training codes, k neighbours, (n,) (the library's,
    `aevb.anomaly.latent.lof_score`, with k other than its 5)."""
    return lof_score(local_density(train, k), *nearest(train, codes, k, own)).numpy()


def latent_gmm(train: torch.Tensor, codes: torch.Tensor, components: int, seed: int) -> np.ndarray:
    """The log density of each code under the mixture of `components` fitted to the training codes, (n,) (the
    library's, `aevb.anomaly.mixture`, with K other than its 20)."""
    return log_density(fit_mixture(train, components, seed), codes).numpy()


def with_mixtures(saved: dict, seed: int) -> dict:
    """`saved` with the GMM base scores computed from its codes where a file written before them lacks them."""
    out = dict(saved)
    for c in sorted({int(k.split("/")[0]) for k in saved}):
        if f"{c}/codes/train" not in saved or f"{c}/{GMM[0]}/test" in saved:
            continue
        train = torch.from_numpy(saved[f"{c}/codes/train"])
        for part in ("train", "test"):
            codes = torch.from_numpy(saved[f"{c}/codes/{part}"])
            for name, k in zip(GMM, (10, 20)):
                out[f"{c}/{name}/{part}"] = latent_gmm(train, codes, k, seed)
    return out


def robust_z(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """(test - the training scores' median) / their interquartile range, (n,)."""
    q1, q2, q3 = np.percentile(train, [25, 50, 75])
    return (test - q2) / (q3 - q1)


def fisher(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """log of the conformal p-value of each test score against the training scores, (n,)."""
    return np.log(conformal_p_values(np.sort(train), test))


BASE = ("log p", "c 0.1", "c 0.25", "c 0.5", "c 1", "latent knn", "latent knn 1", "latent knn 20", "latent maha")
LOF = ("latent lof 5", "latent lof 20")  # the third session of 2026-12-07: the local density in the latent space
GMM = ("latent gmm 10", "latent gmm 20")  # the fourth session of 2026-12-07: a mixture density of the codes
LATER = ("likelihood ratio",)  # base scores saved by the later runs only (fitted with the background VAE)
COMBINED = (
    ("log p", "c 1"),
    ("c 0.25", "latent knn"),
    ("c 1", "latent knn"),
    ("log p", "c 1", "latent knn"),
    # the later runs' candidates (2026-12-07, second session): other weights, neighbours and the likelihood ratio
    ("log p", "c 0.5", "latent knn"),
    ("log p", "c 1", "latent knn 1"),
    ("log p", "c 1", "latent knn 20"),
    ("log p", "c 1", "latent knn", "latent knn"),
    ("log p", "c 1", "latent knn", "likelihood ratio"),
    ("c 0.25", "latent knn", "likelihood ratio"),
    ("c 1", "latent knn", "likelihood ratio"),
    ("log p", "c 1", "latent lof 5"),
    ("log p", "c 1", "latent lof 20"),
    ("log p", "c 1", "latent knn", "latent lof 20"),
    ("log p", "c 1", "latent knn", "latent lof 5"),
    ("c 1", "latent knn", "latent lof 20"),
    ("log p", "c 0.5", "latent knn", "latent lof 20"),
    ("log p", "c 1", "latent knn", "latent knn", "latent lof 20"),
    ("log p", "c 1", "latent knn", "latent lof 20", "latent lof 20"),
    # the fourth session of 2026-12-07: the mixture density as a fifth part or in place of a part
    ("log p", "c 1", "latent knn", "latent lof 5", "latent gmm 10"),
    ("log p", "c 1", "latent knn", "latent lof 5", "latent gmm 20"),
    ("log p", "c 1", "latent gmm 10", "latent lof 5"),
    # the sixth session of 2026-12-07, for MNIST's digit 9 under the 6,000-step default: the mixture counted twice,
    # and the library's five parts with log p or the local outlier factor left out
    ("log p", "c 1", "latent knn", "latent lof 5", "latent gmm 20", "latent gmm 20"),
    ("c 1", "latent knn", "latent lof 5", "latent gmm 20"),
    ("log p", "c 1", "latent knn", "latent gmm 20"),
)
KINDS = {"sum-z": (robust_z, np.add), "min-z": (robust_z, np.minimum), "fisher": (fisher, np.add)}


def base_scores(det: AnomalyDetector, train_rows: np.ndarray, test_rows: np.ndarray) -> dict[str, np.ndarray]:
    """Every score of BASE for the training rows ("NAME/train") and the test rows ("NAME/test"), (n,) each."""
    out, train_codes = {}, None
    for part, rows in (("train", train_rows), ("test", test_rows)):
        log_p = det.scores(rows, "log-likelihood")
        bits = png_code_length(rows, (28, 28))
        codes = posterior_means(det, rows)
        train_codes = codes if train_codes is None else train_codes
        values = [log_p, *(complexity_corrected(log_p, bits, mu) for mu in (0.1, 0.25, 0.5, 1.0))]
        own = part == "train"
        values += [-knn_distance(train_codes, codes, k, own).numpy() for k in (NEIGHBOURS_DEFAULT, 1, 20)]
        values.append(latent_mahalanobis(train_codes, codes))
        values += [latent_lof(train_codes, codes, k, own) for k in (5, 20)]
        values += [latent_gmm(train_codes, codes, k, det.random_state) for k in (10, 20)]
        out.update({f"{name}/{part}": v for name, v in zip(BASE + LOF + GMM, values)})
        out[f"codes/{part}"] = codes.numpy()
        if det.background_ is not None:  # not with --set score=...
            out[f"likelihood ratio/{part}"] = det.scores(rows, "likelihood-ratio")
    return out


def class_scores(saved, c: int) -> dict[str, np.ndarray]:
    """Test-row scores of class c held out: each of BASE and each kind of each combination of COMBINED."""
    scores = {name: saved[f"{c}/{name}/test"] for name in BASE + LOF + GMM + LATER if f"{c}/{name}/test" in saved}
    for names in COMBINED:
        if any(f"{c}/{n}/test" not in saved for n in names):
            continue
        for kind, (transform, reduce) in KINDS.items():
            parts = [transform(saved[f"{c}/{n}/train"], saved[f"{c}/{n}/test"]) for n in names]
            scores[f"{kind}({', '.join(names)})"] = reduce.reduce(parts)
    return scores


def print_table(saved, dataset: str) -> None:
    classes = sorted({int(k.split("/")[0]) for k in saved})
    table = {}
    for c in classes:
        normal = saved[f"{c}/normal"]
        for name, s in class_scores(saved, c).items():
            table.setdefault(name, []).append(roc_auc_score(normal, s))
    print("held-out classes: " + ", ".join(class_name(dataset, c) for c in classes))
    print(f"{'score':36s}" + "".join(f"{c:>7d}" for c in classes) + "    mean  lowest")
    for name, aucs in table.items():
        print(f"{name:36s}" + "".join(f"{a:7.3f}" for a in aucs) + f"{np.mean(aucs):8.3f}{np.min(aucs):8.3f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    one_class_out_arguments(p)
    p.add_argument("--classes", type=int, nargs="+", default=list(range(10)), help="(default: all ten)")
    p.add_argument("--save", help="an .npz file for every base score of every class (training and test rows)")
    p.add_argument("--table", help="print the table of a file --save wrote, without fitting")
    p.add_argument(
        "--set",
        type=parse_setting,
        action="append",
        metavar="KEY=VALUE",
        help="an AnomalyDetector parameter other than its default (repeatable), e.g. epochs=100; score=auto leaves "
        "out the background VAE and the likelihood ratio",
    )
    args = p.parse_args(argv)
    if args.table:
        with np.load(args.table) as saved:
            print_table(with_mixtures(dict(saved), args.seed), args.dataset)
        return
    x_all, y_all, x_test, y_test = image_rows(args.dataset, args.data_dir)
    saved = {}
    for c in args.classes:
        t = time.perf_counter()
        tr, te = subsets(y_all, y_test, c, args.seed, args.train_rows, args.test_rows)
        # the background VAE is fitted besides the model, which is the default's (its own seed, the same draws)
        kw = {"random_state": args.seed, "score": "likelihood-ratio", **dict(args.set or [])}
        det = AnomalyDetector(**kw).fit(x_all[tr])
        saved[f"{c}/normal"] = (y_test[te] != c).astype(int)  # scores are higher for more normal rows
        saved.update({f"{c}/{k}": v for k, v in base_scores(det, x_all[tr], x_test[te]).items()})
        print(f"{class_name(args.dataset, c)}: fitted and scored in {time.perf_counter() - t:.1f}s", flush=True)
    if args.save:
        np.savez_compressed(args.save, **saved)
    print_table(saved, args.dataset)


if __name__ == "__main__":
    main()
