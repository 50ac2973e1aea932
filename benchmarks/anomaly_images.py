"""The image part of benchmarks/anomaly.py: one-class-out on MNIST or Fashion-MNIST.

For class c and seed s, aevb and the peers are fitted on a random subset of the training images of the
other nine classes and score a random subset of the test set, where class c is the anomaly class; the
subsets are drawn with `numpy.random.default_rng(c + 10 s)` (seed 0: `default_rng(c)`, the subsets of the
first records), so each seed has subsets of its own. aevb runs with one of AEVB_SETTINGS
(anomaly_settings.py), recorded under column names of their own (`anomaly_report.aevb_label`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import aevb
from aevb.anomaly.scores import FITTED, NEEDS

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, also when imported by tests
from anomaly_report import text_table  # noqa: E402
from anomaly_runs import new_record, pick_detectors, run_split, save, warm_up  # noqa: E402
from anomaly_settings import AEVB_SETTINGS  # noqa: E402

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def class_name(dataset: str, c: int) -> str:
    return f"digit {c}" if dataset == "mnist" else f"class {c} {FASHION_CLASSES[c]}"


def image_rows(dataset: str, data_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(training and validation images as rows (n, 784) float64, their labels, test rows, test labels)."""
    ds = aevb.load_dataset(dataset, data_dir)
    x_all = torch.cat([ds.train, ds.valid]).flatten(1).numpy().astype(np.float64)
    y_all = torch.cat([ds.train_labels, ds.valid_labels]).numpy()
    return x_all, y_all, ds.test.flatten(1).numpy().astype(np.float64), ds.test_labels.numpy()


def one_class_out_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of the one-class-out explorations (anomaly_pixel_background.py, anomaly_combined.py): the
    dataset, one seed for the subsets and the detector, the data folder and the subsets' sizes."""
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist", help="(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="subsets and detector seed (default: %(default)s)")
    p.add_argument("--data-dir", default="../shared/data", help="folder of the datasets (default: %(default)s)")
    p.add_argument("--train-rows", type=int, default=2000, help="(default: %(default)s)")
    p.add_argument("--test-rows", type=int, default=1000, help="(default: %(default)s)")


def subsets(y_all: np.ndarray, y_test: np.ndarray, c: int, seed: int, train_rows: int, test_rows: int):
    """(training indices among the other classes, test indices) of class c held out on seed `seed`."""
    rng = np.random.default_rng(c + 10 * seed)
    normal = np.flatnonzero(y_all != c)
    tr = rng.choice(normal, size=min(train_rows, normal.size), replace=False)
    te = rng.choice(y_test.size, size=min(test_rows, y_test.size), replace=False)
    return tr, te


def aevb_kw(settings: str, scores: list[str]) -> dict:
    """The AnomalyDetector parameters of `settings`; fitted with score="likelihood-ratio" when that score is
    wanted (it trains the background VAE; the concentration refits then trim by that score). The latent scores
    and "combined" need the default fit on images (score "auto" is "combined"), so none goes with it."""
    fitted = {s for s in scores if set(NEEDS.get(s, ())) & set(FITTED)}  # scores fitted with what they need
    if "likelihood-ratio" in fitted and len(fitted) > 1:
        raise SystemExit(f"likelihood-ratio and {' and '.join(sorted(fitted - {'likelihood-ratio'}))} need two fits")
    return {**AEVB_SETTINGS[settings], **({"score": "likelihood-ratio"} if "likelihood-ratio" in scores else {})}


def images(args) -> None:
    """One-class-out on args.dataset for args.seeds: every class, every detector; writes the record as it goes."""
    x_all, y_all, x_test, y_test = image_rows(args.dataset, args.data_dir)
    kw = aevb_kw(args.aevb_settings, args.aevb_scores)
    detectors = pick_detectors(args.detectors)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    # train_rows and test_rows fix the subsets: records with other values are not combined (anomaly_report.py)
    results = new_record(
        detectors,
        seeds=seeds,
        train_rows=args.train_rows,
        test_rows=args.test_rows,
        aevb_settings=args.aevb_settings,
        aevb=kw,
        aevb_scores=args.aevb_scores,
    )
    warm_up(detectors)
    for c in range(10):
        name, rows, shares = class_name(args.dataset, c), [], []
        for seed in seeds:
            tr, te = subsets(y_all, y_test, c, seed, args.train_rows, args.test_rows)
            y = (y_test[te] == c).astype(int)
            shares.append(float(y.mean()))
            t = time.perf_counter()
            rows += run_split(x_all[tr], x_test[te], y, seed, kw, detectors, args.aevb_scores, args.aevb_settings)
            best = max((r for r in rows if r["seed"] == seed), key=lambda r: r["auc"])
            print(
                f"{args.dataset} {name} held out, seed {seed}  {time.perf_counter() - t:6.1f}s  "
                f"best {best['method']} {best['auc']:.3f}",
                flush=True,
            )
        d, share = int(x_all.shape[1]), float(np.mean(shares))  # the anomalies' share: mean over the seeds
        results["datasets"][name] = {"n": int(tr.size), "d": d, "anomalies": share, "rows": rows}
        save(f"{args.dataset}{args.shard}", results)
    print(text_table(results["datasets"]))
