"""Benchmark of aevb.AnomalyDetector against the peers of benchmarks/anomaly_peers.py (IsolationForest,
PCA reconstruction error, PyOD's VAE, MCD, HBOS, COPOD, ECOD, KNN, LOF).

    OMP_NUM_THREADS=1 python benchmarks/anomaly.py tabular --adbench ../shared/data/adbench --seeds 1
    OMP_NUM_THREADS=1 python benchmarks/anomaly.py images --dataset fashion-mnist --data-dir ../shared/data
    python benchmarks/anomaly.py images --detectors aevb --aevb-scores log-likelihood complexity --seeds 3
    python benchmarks/anomaly.py tabular --seeds 3 --detectors KNN LOF --shard _knn   # peers only, no aevb
    python benchmarks/anomaly.py report          # docs/benchmarks/anomaly.md from the JSON files
    python benchmarks/anomaly.py sweep --set trim=0.1   # one setting on the same splits; prints only

tabular: every ADBench classical .npz in --adbench, for each seed a stratified 70/30 split; every
detector is fitted on the training part without labels and scored on the test part (ROC-AUC, AP).
images: one-class-out on MNIST or Fashion-MNIST; for each class c, fit on a random subset of the
training images of the other nine classes and score a random subset of the test set, where class c is
the anomaly class. aevb runs with its defaults or other named settings (--aevb-settings: the first records',
one fit of the learned Gaussian, the robust Gaussian with 2 refits) and records each score of --aevb-scores
(benchmarks/anomaly_images.py).
sweep: aevb with other AnomalyDetector parameters (--set KEY=VALUE) on the tabular splits, against the
peers stored for the same seeds (or IsolationForest and PCA fitted in the run, for --files without
stored rows, e.g. ODDS arrhythmia); how the defaults were chosen (docs/benchmarks/anomaly.md).
tabular and images write docs/benchmarks/anomaly_<part><shard>.json as they go (per dataset, method and
seed; --detectors picks who runs); `report` combines every such record (benchmarks/anomaly_report.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

import aevb

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, also when imported by tests
from anomaly_images import images  # noqa: E402
from anomaly_peers import PEERS  # noqa: E402
from anomaly_report import AEVB_SCORES, IMAGE_SCORES, merged_datasets, report, text_table  # noqa: E402
from anomaly_runs import DETECTORS, DOCS, new_record, pick_detectors, run_split, save, warm_up  # noqa: E402
from anomaly_settings import AEVB_SETTINGS  # noqa: E402


def tabular(args) -> None:
    files = sorted(Path(args.adbench).glob("*.npz"), key=lambda p: int(p.name.split("_")[0]))
    if args.only:
        files = [f for f in files if f.stem in args.only]
    if not files:
        sys.exit(f"no .npz files in {args.adbench}")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    detectors = pick_detectors(args.detectors)
    results = new_record(detectors, seeds=seeds)
    warm_up(detectors)
    done = DOCS / f"anomaly_tabular{args.shard}.json"
    if args.keep and done.exists():  # carry on after an interrupted run: keep the finished datasets
        old = json.loads(done.read_text())
        results["written"], results["datasets"] = old.get("written", results["written"]), old["datasets"]
    for f in files:
        if f.stem in results["datasets"]:
            continue
        x, y = read_labelled(f)
        rows = []
        for seed in seeds:
            xtr, xte, _, yte = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
            t = time.perf_counter()
            rows += run_split(xtr, xte, yte, seed, {}, detectors)
            best = max((r for r in rows if r["seed"] == seed), key=lambda r: r["auc"])
            print(
                f"{f.stem:16s} seed {seed}  {time.perf_counter() - t:6.1f}s  best {best['method']} {best['auc']:.3f}",
                flush=True,
            )
        results["datasets"][f.stem] = {
            "n": int(x.shape[0]),
            "d": int(x.shape[1]),
            "anomalies": float(y.mean()),
            "rows": rows,
        }
        save(f"tabular{args.shard}", results)
    print(text_table(results["datasets"]))


# --- sweeps: one detector setting against the stored peers ------------------------------------


def parse_setting(text: str) -> tuple[str, object]:
    """'key=value' -> (key, value); the value is read as JSON when it parses (1e-3, [64, 64], false), a string
    otherwise; a JSON list becomes a tuple (`hidden`)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set takes key=value; got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key, tuple(parsed) if isinstance(parsed, list) else parsed


def read_labelled(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of an ADBench .npz or an ODDS .mat file (MATLAB v5: arrays X and y; no pickle in either)."""
    if path.suffix == ".mat":
        from scipy.io import loadmat

        data = loadmat(path)
    else:
        data = np.load(path, allow_pickle=False)
    return np.asarray(data["X"], dtype=np.float64), np.asarray(data["y"]).ravel().astype(int)


def _sweep_job(job: tuple[str, int, dict, str, bool]) -> tuple[str, int, dict[str, float], float]:
    """Fit aevb with the given settings on one split of one file: (name, seed, {method: ROC-AUC}, aevb fit
    seconds); with baselines=True also IsolationForest and PCA on the same split."""
    path, seed, kw, score, baselines = job
    torch.set_num_threads(1)
    x, y = read_labelled(Path(path))
    xtr, xte, _, yte = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
    t = time.perf_counter()
    det = aevb.AnomalyDetector(random_state=seed, **kw).fit(xtr)
    fit_s = time.perf_counter() - t
    aucs = {"this": float(roc_auc_score(yte, -det.scores(xte, score)))}
    if baselines:
        for peer in ("IsolationForest", "PCA"):
            aucs[peer] = float(roc_auc_score(yte, PEERS[peer](xtr, seed)(xte)))
    return Path(path).stem, seed, aucs, fit_s


def _mean_auc(fitted: dict[str, list[float]], rows: list[dict], seeds: list[int], method: str) -> float:
    """Mean ROC-AUC of `method` over `seeds`: from this run's `fitted` values, else the stored `rows` (nan if
    a seed is missing)."""
    if method in fitted:
        return float(np.mean(fitted[method]))
    v = [r["auc"] for r in rows if r["method"] == method and r["seed"] in seeds]
    return float(np.mean(v)) if len(v) == len(seeds) else float("nan")


def sweep(args) -> None:
    """aevb with `--set` settings on the benchmark's splits, compared per dataset with the stored baselines and
    the stored default aevb rows of the same seeds; a file without stored rows (--files, e.g. ODDS
    arrhythmia) gets IsolationForest and PCA fitted in the same run instead. Writes nothing under docs/."""
    from concurrent.futures import ProcessPoolExecutor

    kw = dict(args.set or [])
    if args.files:
        files = [Path(f) for f in args.files]
    else:
        files = sorted(Path(args.adbench).glob("*.npz"), key=lambda p: int(p.name.split("_")[0]))
        files = [f for f in files if not args.only or f.stem in args.only]
    stored = merged_datasets(sorted(DOCS.glob("anomaly_tabular*.json")))
    jobs = [(str(f), s, kw, args.score, f.stem not in stored) for f in files for s in args.seeds]
    # the largest sets first, so that the pool ends with short jobs
    jobs.sort(key=lambda j: -stored.get(Path(j[0]).stem, {}).get("n", 0))
    aucs: dict[str, dict[str, list[float]]] = {}
    fits = []
    with ProcessPoolExecutor(args.workers) as pool:
        for name, _, values, fit_s in pool.map(_sweep_job, jobs):
            for method, auc in values.items():
                aucs.setdefault(name, {}).setdefault(method, []).append(auc)
            fits.append(fit_s)
    print(f"settings {kw or 'defaults'}, score {args.score}, seeds {args.seeds}")
    print(f"{'dataset':16s} {'this':>6s} {'default':>7s} {'best peer':>22s}")
    means, defaults, first = [], [], []
    for f in files:
        rows = stored.get(f.stem, {}).get("rows", [])
        mean_of = partial(_mean_auc, aucs[f.stem], rows, args.seeds)
        this = mean_of("this")
        default = mean_of(AEVB_SCORES[args.score])
        base = max(PEERS, key=lambda m: np.nan_to_num(mean_of(m), nan=-1))
        mark = "first" if this > mean_of(base) else ""
        print(f"{f.stem:16s} {this:6.3f} {default:7.3f} {base:>16s} {mean_of(base):.3f} {mark}")
        means.append(this)
        defaults.append(default)
        first.append(bool(mark))
    known = [v for v in defaults if not np.isnan(v)]
    print(
        f"mean ROC-AUC {np.mean(means):.4f} (stored default {np.mean(known) if known else float('nan'):.4f}); "
        f"first on {sum(first)} of {len(first)}; mean fit {np.mean(fits):.2f} s"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="part", required=True)
    detectors = {
        "nargs": "+",
        "choices": DETECTORS,
        "metavar": "NAME",
        "help": f"run only these ({', '.join(DETECTORS)}; default: all; aevb gives a column per score)",
    }
    shard = "suffix of the JSON file, so that several invocations (datasets, seeds, detectors) keep their records"
    t = sub.add_parser("tabular", help="ADBench classical datasets")
    t.add_argument(
        "--adbench", default="../shared/data/adbench", help="folder of the ADBench .npz files (default: %(default)s)"
    )
    t.add_argument("--seeds", type=int, default=5, help="number of splits/seeds (default: %(default)s)")
    t.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, ... (default: %(default)s)")
    t.add_argument("--only", nargs="+", metavar="NAME", help="only these datasets (file stems); default: all")
    t.add_argument("--detectors", **detectors)
    t.add_argument("--shard", default="", help=shard + " (default: none)")
    t.add_argument("--keep", action="store_true", help="keep the datasets already in the shard's JSON file")
    m = sub.add_parser("images", help="MNIST or Fashion-MNIST one-class-out")
    m.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist", help="(default: %(default)s)")
    m.add_argument("--data-dir", default="../shared/data", help="folder holding the dataset (default: %(default)s)")
    m.add_argument(
        "--train-rows", type=int, default=2000, help="training images of the other classes (default: %(default)s)"
    )
    m.add_argument("--test-rows", type=int, default=1000, help="test images, all classes (default: %(default)s)")
    m.add_argument("--seeds", type=int, default=1, help="number of seeds (default: %(default)s)")
    m.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, ... (default: %(default)s)")
    m.add_argument(
        "--aevb-settings",
        choices=AEVB_SETTINGS,
        default="default",
        help="aevb's parameters, benchmarks/anomaly_images.py (default: %(default)s)",
    )
    m.add_argument(
        "--aevb-scores",
        nargs="+",
        choices=AEVB_SCORES,
        default=list(IMAGE_SCORES),
        metavar="SCORE",
        help=f"aevb's scores, of {', '.join(AEVB_SCORES)}; with likelihood-ratio aevb is fitted with that score "
        "(default: %(default)s)",
    )
    no_mcd = [d for d in DETECTORS if d != "MCD"]  # MinCovDet on 784 pixels: no fit within 4 minutes
    m.add_argument(
        "--detectors", **{**detectors, "default": no_mcd, "help": detectors["help"].replace("all", "all but MCD")}
    )
    m.add_argument("--shard", default="", help=shard + " (default: none)")
    w = sub.add_parser("sweep", help="aevb with other settings on the stored splits; prints, writes nothing")
    w.add_argument(
        "--adbench", default="../shared/data/adbench", help="folder of the ADBench .npz files (default: %(default)s)"
    )
    w.add_argument(
        "--set", action="append", type=parse_setting, metavar="KEY=VALUE", help="an AnomalyDetector parameter"
    )
    w.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds (default: %(default)s)")
    w.add_argument("--only", nargs="+", metavar="NAME", help="only these datasets (file stems); default: all")
    w.add_argument(
        "--files", nargs="+", metavar="FILE", help="these .npz/.mat files instead (e.g. adbench/odds/arrhythmia.mat)"
    )
    w.add_argument("--score", choices=AEVB_SCORES, default="log-likelihood", help="(default: %(default)s)")
    w.add_argument("--workers", type=int, default=2, help="processes (default: %(default)s)")
    r = sub.add_parser("report", help="write docs/benchmarks/anomaly.md from every record; print its tables")
    r.add_argument("--docs", type=Path, default=DOCS, help="folder of the records and the page (default: %(default)s)")
    r.add_argument(
        "--seeds", type=int, nargs="+", help="print the tables on only these seeds and write nothing (default: all)"
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.part == "report":
        return report(args.docs, args.seeds)
    {"tabular": tabular, "images": images, "sweep": sweep}[args.part](args)


if __name__ == "__main__":
    main()
