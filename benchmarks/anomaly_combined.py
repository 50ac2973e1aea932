"""Can scores that fail on different held-out classes be combined into one image score? One-class-out MNIST or
Fashion-MNIST (the subsets of `benchmarks/anomaly.py images`), aevb's default detector, one fit per held-out
class, and scores of that fit (higher = more normal):

- log p(x) and the tempered complexity correction c_mu(x) = log p(x) + mu L(x) ln 2 (L the PNG code length
  in bits; mu = 0.1 the default score, mu = 1 Serra et al.'s): log p(x) fails on simple held-out classes
  (MNIST digit 1), c_1 on complex ones;
- the latent codes: minus the mean Euclidean distance of a row's posterior mean to its 5 nearest training
  posterior means (`latent knn`), and minus its Mahalanobis distance to the training posterior means
  (`latent maha`);
- combinations of two or three of them, each score first standardised by its training rows' median and
  interquartile range (z): `sum-z(a, b, ...)` adds them, `min-z(...)` takes the smallest (a row is as anomalous
  as its most anomalous test), `fisher(...)` adds the logs of the conformal p-values against the training rows'
  scores (`aevb.anomaly.calibration.conformal_p_values`).

    OMP_NUM_THREADS=1 python benchmarks/anomaly_combined.py --dataset mnist --seed 0 --save scores.npz

prints ROC-AUC per held-out class and the mean and minimum over the classes, and saves every base score of
every class (training and test rows); `--table scores.npz` prints the table again from that file without
fitting. An exploration of issue 20 (results in docs/benchmarks/anomaly_notes.md), not a score of the detector.
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
from aevb.anomaly.scores import complexity_corrected

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anomaly_images import class_name, image_rows, one_class_out_arguments, subsets  # noqa: E402

NEIGHBOURS = 5


def posterior_means(det: AnomalyDetector, rows: np.ndarray) -> np.ndarray:
    """The fitted model's posterior means E[z|x] of `rows`, (n, Dz)."""
    with torch.no_grad():
        return det.model_.encode(det._tensor(rows)).mean.double().numpy()


def latent_knn(train: np.ndarray, codes: np.ndarray, exclude_self: bool) -> np.ndarray:
    """Minus the mean distance of each code to its NEIGHBOURS nearest training codes, (n,)."""
    d = torch.cdist(torch.from_numpy(codes), torch.from_numpy(train)).numpy()
    d = np.sort(d, axis=1)[:, int(exclude_self) : NEIGHBOURS + int(exclude_self)]
    return -d.mean(1)


def latent_mahalanobis(train: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Minus the Mahalanobis distance of each code to the training codes' mean and covariance, (n,)."""
    centred = codes - train.mean(0)
    precision = np.linalg.pinv(np.cov(train, rowvar=False))
    return -np.sqrt(np.einsum("ni,ij,nj->n", centred, precision, centred))


def robust_z(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """(test - the training scores' median) / their interquartile range, (n,)."""
    q1, q2, q3 = np.percentile(train, [25, 50, 75])
    return (test - q2) / (q3 - q1)


def fisher(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """log of the conformal p-value of each test score against the training scores, (n,)."""
    return np.log(conformal_p_values(np.sort(train), test))


BASE = ("log p", "c 0.1", "c 0.25", "c 1", "latent knn", "latent maha")
COMBINED = (
    ("log p", "c 1"),
    ("c 0.25", "latent knn"),
    ("c 1", "latent knn"),
    ("log p", "c 1", "latent knn"),
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
        values = [log_p, *(complexity_corrected(log_p, bits, mu) for mu in (0.1, 0.25, 1.0))]
        values += [latent_knn(train_codes, codes, part == "train"), latent_mahalanobis(train_codes, codes)]
        out.update({f"{name}/{part}": v for name, v in zip(BASE, values)})
    return out


def class_scores(saved, c: int) -> dict[str, np.ndarray]:
    """Test-row scores of class c held out: each of BASE and each kind of each combination of COMBINED."""
    scores = {name: saved[f"{c}/{name}/test"] for name in BASE}
    for names in COMBINED:
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
    args = p.parse_args(argv)
    if args.table:
        with np.load(args.table) as saved:
            print_table(dict(saved), args.dataset)
        return
    x_all, y_all, x_test, y_test = image_rows(args.dataset, args.data_dir)
    saved = {}
    for c in args.classes:
        t = time.perf_counter()
        tr, te = subsets(y_all, y_test, c, args.seed, args.train_rows, args.test_rows)
        det = AnomalyDetector(random_state=args.seed).fit(x_all[tr])
        saved[f"{c}/normal"] = (y_test[te] != c).astype(int)  # scores are higher for more normal rows
        saved.update({f"{c}/{k}": v for k, v in base_scores(det, x_all[tr], x_test[te]).items()})
        print(f"{class_name(args.dataset, c)}: fitted and scored in {time.perf_counter() - t:.1f}s", flush=True)
    if args.save:
        np.savez_compressed(args.save, **saved)
    print_table(saved, args.dataset)


if __name__ == "__main__":
    main()
