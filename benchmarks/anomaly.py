"""Benchmark of aevb.AnomalyDetector against IsolationForest, PCA reconstruction error and PyOD's VAE.

    OMP_NUM_THREADS=1 python benchmarks/anomaly.py tabular --adbench ../shared/data/adbench
    OMP_NUM_THREADS=1 python benchmarks/anomaly.py mnist --data-dir ../shared/data
    python benchmarks/anomaly.py report          # docs/benchmarks/anomaly.md from the JSON files
    python benchmarks/anomaly.py sweep --set trim=0.1   # one setting on the same splits; prints only

tabular: every ADBench classical .npz in --adbench, for each seed a stratified 70/30 split; every
detector is fitted on the training part without labels and scored on the test part (ROC-AUC, AP).
mnist: one-class-out; for each digit c, fit on a random subset of the MNIST training images of the
other nine digits and score a random subset of the test set, where digit c is the anomaly class.
sweep: aevb with other AnomalyDetector parameters (--set KEY=VALUE) on the tabular splits, against the
baselines stored for the same seeds (or IsolationForest and PCA fitted in the run, for --files without
stored rows, e.g. ODDS arrhythmia); how the defaults were chosen (docs/benchmarks/anomaly.md).
Each part but sweep writes docs/benchmarks/anomaly_<part>.json as it goes (per dataset, method and seed).
Needs the `bench` extra (pyod) for PyOD's VAE; without it that column is left out.
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
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import aevb
from aevb.files import atomic_write_text

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
AEVB_SCORES = {"log-likelihood": "aevb log p(x)", "elbo": "aevb ELBO", "reconstruction": "aevb recon. prob."}
BASELINES = ("PyOD VAE", "IsolationForest", "PCA")
HEAD_TO_HEAD = ("aevb log p(x)", *BASELINES)  # one aevb entry, so that "wins" is a fair count


def pca_scores(x_train: np.ndarray, x_test: np.ndarray, seed: int):
    """Squared reconstruction error of standardised rows from the PCs that explain 90% of the variance."""
    scaler = StandardScaler().fit(x_train)
    pca = PCA(n_components=0.9, svd_solver="full", random_state=seed).fit(scaler.transform(x_train))
    z = scaler.transform(x_test)
    return -np.square(z - pca.inverse_transform(pca.transform(z))).sum(1)  # higher = more normal


def run_split(x_train, x_test, y_test, seed: int, aevb_kw: dict, baselines: bool = True) -> list[dict]:
    """Fit every detector on x_train, score x_test; records of (method, auc, ap, fit_s, score_s).
    baselines=False: aevb only."""
    rows = []

    def record(method, normal_score, fit_s, score_s):
        s = -np.asarray(normal_score, dtype=np.float64)  # anomaly score: higher = more anomalous
        rows.append(
            {
                "method": method,
                "seed": seed,
                "auc": float(roc_auc_score(y_test, s)),
                "ap": float(average_precision_score(y_test, s)),
                "fit_s": fit_s,
                "score_s": score_s,
            }
        )

    t = time.perf_counter()
    det = aevb.AnomalyDetector(random_state=seed, **aevb_kw).fit(x_train)
    fit_s = time.perf_counter() - t
    for name, label in AEVB_SCORES.items():
        t = time.perf_counter()
        values = det.scores(x_test, name)
        record(label, values, fit_s, time.perf_counter() - t)
    if not baselines:
        return rows

    try:
        from pyod.models.vae import VAE as PyodVAE
    except ImportError:
        PyodVAE = None
    if PyodVAE is not None:
        t = time.perf_counter()
        pv = PyodVAE(random_state=seed, verbose=0).fit(x_train)  # its defaults
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        record("PyOD VAE", -pv.decision_function(x_test), fit_s, time.perf_counter() - t)

    t = time.perf_counter()
    iso = IsolationForest(random_state=seed).fit(x_train)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    record("IsolationForest", iso.score_samples(x_test), fit_s, time.perf_counter() - t)

    t = time.perf_counter()
    values = pca_scores(x_train, x_test, seed)
    record("PCA", values, time.perf_counter() - t, 0.0)  # fit and score in one
    return rows


def versions() -> dict[str, str]:
    """The versions of the libraries behind the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("aevb", "torch", "numpy", "scikit-learn", "pyod"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def merged_datasets(parts: list[dict]) -> dict[str, dict]:
    """The datasets of several JSON records (shards over datasets or over seeds) in one dict; the rows of a
    dataset found in several shards are concatenated."""
    out: dict[str, dict] = {}
    for part in parts:
        for name, d in part["datasets"].items():
            if name in out:
                out[name] = {**out[name], "rows": out[name]["rows"] + d["rows"]}
            else:
                out[name] = dict(d)
    return out


def earlier_baselines(part: str) -> tuple[dict[str, list[dict]], list[str]]:
    """The baseline rows (PyOD VAE, IsolationForest, PCA) per dataset of the JSON files already written
    for `part` (tabular: every shard), and the commands that measured them."""
    found, commands = {}, []
    records = [json.loads(path.read_text()) for path in sorted(DOCS.glob(f"anomaly_{part}*.json"))]
    for rec in records:
        commands += rec["baselines_from"]["commands"] if "baselines_from" in rec else [rec["command"]]
    for name, d in merged_datasets(records).items():
        found[name] = [r for r in d["rows"] if r["method"] in BASELINES]
    if not found:
        sys.exit(f"--reuse-baselines: no docs/benchmarks/anomaly_{part}*.json to take the baselines from")
    return found, list(dict.fromkeys(commands))


def reused(rows: list[dict], earlier: dict[str, list[dict]], name: str, seeds: list[int]) -> list[dict]:
    """rows (aevb) plus the earlier baseline rows of dataset `name` for these seeds; exits when one is missing."""
    old = [r for r in earlier.get(name, []) if r["seed"] in seeds]
    if len(old) != len(BASELINES) * len(seeds):
        sys.exit(f"--reuse-baselines: the earlier run has no baseline rows of {name} for seeds {seeds}")
    return rows + old


def save(part: str, results: dict) -> None:
    atomic_write_text(DOCS / f"anomaly_{part}.json", json.dumps(results, indent=1) + "\n")


def tabular(args) -> None:
    files = sorted(Path(args.adbench).glob("*.npz"), key=lambda p: int(p.name.split("_")[0]))
    if args.only:
        files = [f for f in files if f.stem in args.only]
    if not files:
        sys.exit(f"no .npz files in {args.adbench}")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    results = {"command": " ".join(sys.argv), "seeds": seeds, "versions": versions(), "datasets": {}}
    if args.reuse_baselines:
        earlier, commands = earlier_baselines("tabular")
        results["baselines_from"] = {"commands": commands}
    done = DOCS / f"anomaly_tabular{args.shard}.json"
    if args.keep and done.exists():  # carry on after an interrupted run: keep the finished datasets
        results["datasets"] = json.loads(done.read_text())["datasets"]
    for f in files:
        if f.stem in results["datasets"]:
            continue
        x, y = read_labelled(f)
        rows = []
        for seed in seeds:
            xtr, xte, _, yte = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
            t = time.perf_counter()
            new = run_split(xtr, xte, yte, seed, {}, baselines=not args.reuse_baselines)
            rows += reused(new, earlier, f.stem, [seed]) if args.reuse_baselines else new
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


def mnist(args) -> None:
    ds = aevb.load_dataset("mnist", args.data_dir)
    x_all = torch.cat([ds.train, ds.valid]).reshape(-1, 784).numpy().astype(np.float64)
    y_all = torch.cat([ds.train_labels, ds.valid_labels]).numpy()
    x_test, y_test = ds.test.reshape(-1, 784).numpy().astype(np.float64), ds.test_labels.numpy()
    # images: the learned Gaussian (`aevb detect fit` picks it for built-in image datasets); the default
    # gaussian-robust caps what a wrong pixel costs and scores 0.566 here against 0.665. One fit, as
    # `aevb detect fit` does for built-in datasets: the training images hold no anomalies to leave out
    kw = {
        "epochs": args.mnist_epochs,
        "n_samples": args.mnist_samples,
        "likelihood": "gaussian-learned",
        "refits": 0,
    }
    results = {
        "command": " ".join(sys.argv),
        "train_rows": args.train_rows,
        "test_rows": args.test_rows,
        "aevb": kw,
        "versions": versions(),
        "datasets": {},
    }
    if args.reuse_baselines:
        earlier, commands = earlier_baselines("mnist")
        results["baselines_from"] = {"commands": commands}
    for digit in range(10):
        rng = np.random.default_rng(digit)
        normal = np.flatnonzero(y_all != digit)
        tr = rng.choice(normal, size=min(args.train_rows, normal.size), replace=False)
        te = rng.choice(y_test.size, size=min(args.test_rows, y_test.size), replace=False)
        t = time.perf_counter()
        rows = run_split(x_all[tr], x_test[te], (y_test[te] == digit).astype(int), 0, kw, not args.reuse_baselines)
        if args.reuse_baselines:
            rows = reused(rows, earlier, f"digit {digit}", [0])
        best = max(rows, key=lambda r: r["auc"])
        print(
            f"mnist digit {digit} held out  {time.perf_counter() - t:6.1f}s  best {best['method']} {best['auc']:.3f}",
            flush=True,
        )
        results["datasets"][f"digit {digit}"] = {
            "n": int(tr.size),
            "d": 784,
            "anomalies": float((y_test[te] == digit).mean()),
            "rows": rows,
        }
        save("mnist", results)


# --- sweeps: one detector setting against the stored baselines ------------------------------------


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
        iso = IsolationForest(random_state=seed).fit(xtr)
        aucs["IsolationForest"] = float(roc_auc_score(yte, -iso.score_samples(xte)))
        aucs["PCA"] = float(roc_auc_score(yte, -pca_scores(xtr, xte, seed)))
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
    stored = merged_datasets([json.loads(path.read_text()) for path in sorted(DOCS.glob("anomaly_tabular*.json"))])
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
    print(f"{'dataset':16s} {'this':>6s} {'default':>7s} {'best baseline':>22s}")
    means, defaults, first = [], [], []
    for f in files:
        rows = stored.get(f.stem, {}).get("rows", [])
        mean_of = partial(_mean_auc, aucs[f.stem], rows, args.seeds)
        this = mean_of("this")
        default = mean_of(AEVB_SCORES[args.score])
        base = max(BASELINES, key=lambda m: np.nan_to_num(mean_of(m), nan=-1))
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


# --- the report ---------------------------------------------------------------------------------


def summarize(part: dict) -> tuple[list[str], dict]:
    """Per dataset and method: mean and std of auc/ap, mean fit/score seconds."""
    methods = [
        m
        for m in (*AEVB_SCORES.values(), *BASELINES)
        if any(r["method"] == m for d in part["datasets"].values() for r in d["rows"])
    ]
    table = {}
    for name, d in part["datasets"].items():
        table[name] = {}
        for m in methods:
            rs = [r for r in d["rows"] if r["method"] == m]
            if rs:
                table[name][m] = {
                    k: (float(np.mean([r[k] for r in rs])), float(np.std([r[k] for r in rs])))
                    for k in ("auc", "ap", "fit_s", "score_s")
                }
    return methods, table


def ranks(table: dict, methods: list[str]) -> dict[str, float]:
    """Mean over datasets of each method's rank by mean ROC-AUC (1 = best; ties share the mean rank)."""
    from scipy.stats import rankdata

    out = {m: [] for m in methods}
    for row in table.values():
        ms = [m for m in methods if m in row]
        for m, r in zip(ms, rankdata([-row[m]["auc"][0] for m in ms])):
            out[m].append(r)
    return {m: float(np.mean(v)) for m, v in out.items() if v}


def section(title: str, part: dict) -> list[str]:
    methods, table = summarize(part)
    lines = [f"## {title}", "", f"Command: `{part['command']}`", ""]
    if part.get("baselines_from"):
        lines += [
            "The aevb columns are from this run; the PyOD VAE, IsolationForest and PCA columns are the per-seed "
            f"results of the earlier run `{' ; '.join(part['baselines_from']['commands'])}` on the same splits "
            "(same seeds; the split is a deterministic function of the seed).",
            "",
        ]
    if part.get("versions"):
        lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in part["versions"].items()) + ".", ""]
    for metric, label in (("auc", "ROC-AUC"), ("ap", "Average precision")):
        lines += [f"### {label} (mean ± std over seeds; best in bold)", ""]
        lines += [
            "| dataset | n | d | anomalies | " + " | ".join(methods) + " |",
            "|---|---:|---:|---:|" + "---:|" * len(methods),
        ]
        for name, row in table.items():
            d = part["datasets"][name]
            best = max(row[m][metric][0] for m in row)
            cells = []
            for m in methods:
                if m not in row:
                    cells.append("–")
                    continue
                mean, std = row[m][metric]
                text = f"{mean:.3f} ± {std:.3f}"
                cells.append(f"**{text}**" if mean == best else text)
            lines.append(f"| {name} | {d['n']} | {d['d']} | {d['anomalies']:.1%} | " + " | ".join(cells) + " |")
        means = {m: np.mean([row[m][metric][0] for row in table.values() if m in row]) for m in methods}
        lines.append("| **mean** | | | | " + " | ".join(f"**{means[m]:.3f}**" for m in methods) + " |")
        lines.append("")
    rk = ranks(table, methods)
    head = [m for m in HEAD_TO_HEAD if m in methods]
    wins, ties = {m: 0 for m in head}, {m: 0 for m in head}
    for row in table.values():
        best = max(row[m]["auc"][0] for m in head if m in row)
        top = [m for m in head if m in row and row[m]["auc"][0] == best]
        for m in top:  # a set where several share the best mean is a tie, nobody's win
            (wins if len(top) == 1 else ties)[m] += 1
    lines += [
        "### Summary",
        "",
        "| method | mean ROC-AUC | mean AP | mean rank (all methods, by ROC-AUC) | first among "
        + ", ".join(head)
        + " | fit s (mean) | score s (mean) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in methods:
        auc = np.mean([row[m]["auc"][0] for row in table.values() if m in row])
        ap = np.mean([row[m]["ap"][0] for row in table.values() if m in row])
        fit = np.mean([row[m]["fit_s"][0] for row in table.values() if m in row])
        score = np.mean([row[m]["score_s"][0] for row in table.values() if m in row])
        first = f"{wins[m]} of {len(table)}" + (f" (+{ties[m]} tied)" if ties.get(m) else "") if m in wins else ""
        lines.append(f"| {m} | {auc:.3f} | {ap:.3f} | {rk[m]:.2f} | {first} | {fit:.2f} | {score:.2f} |")
    lines.append("")
    return lines


def report(args) -> None:
    lines = [
        "# Anomaly detection benchmark",
        "",
        "Written by `python benchmarks/anomaly.py report` from the JSON files beside this page; every number "
        "below was measured in the runs whose commands are shown.",
        "",
    ]
    shards = sorted(DOCS.glob("anomaly_tabular*.json"))
    if shards:  # parallel processes over disjoint datasets: one table
        parts = [json.loads(p.read_text()) for p in shards]
        merged = {"command": " ; ".join(p["command"] for p in parts), "datasets": {}}
        commands = [c for p in parts for c in p.get("baselines_from", {}).get("commands", [])]
        if commands:
            merged["baselines_from"] = {"commands": list(dict.fromkeys(commands))}
        versions = {json.dumps(p["versions"]) for p in parts if "versions" in p}
        if len(versions) == 1:  # shards run with the same libraries
            merged["versions"] = json.loads(versions.pop())
        merged["datasets"] = merged_datasets(parts)
        order = sorted(merged["datasets"], key=lambda k: int(k.split("_")[0]))
        merged["datasets"] = {k: merged["datasets"][k] for k in order}
        lines += section("ADBench classical tabular datasets", merged)
    if (DOCS / "anomaly_mnist.json").exists():
        lines += section("MNIST one-class-out", json.loads((DOCS / "anomaly_mnist.json").read_text()))
    notes = DOCS / "anomaly_notes.md"
    if notes.exists():
        lines += [notes.read_text()]
    atomic_write_text(DOCS / "anomaly.md", "\n".join(lines) + "\n")
    print(f"wrote {DOCS / 'anomaly.md'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="part", required=True)
    t = sub.add_parser("tabular", help="ADBench classical datasets")
    t.add_argument(
        "--adbench", default="../shared/data/adbench", help="folder of the ADBench .npz files (default: %(default)s)"
    )
    t.add_argument("--seeds", type=int, default=5, help="number of splits/seeds (default: %(default)s)")
    t.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, ... (default: %(default)s)")
    t.add_argument("--only", nargs="+", metavar="NAME", help="only these datasets (file stems); default: all")
    t.add_argument("--shard", default="", help="suffix of the JSON file, to run datasets in parallel processes")
    t.add_argument("--keep", action="store_true", help="keep the datasets already in the shard's JSON file")
    reuse = (
        "rerun only aevb and take the baselines' rows (same seeds, hence the same splits) from the JSON files "
        "already in docs/benchmarks"
    )
    t.add_argument("--reuse-baselines", action="store_true", help=reuse)
    m = sub.add_parser("mnist", help="MNIST one-class-out")
    m.add_argument("--reuse-baselines", action="store_true", help=reuse)
    m.add_argument("--data-dir", default="../shared/data", help="folder holding mnist/ (default: %(default)s)")
    m.add_argument("--train-rows", type=int, default=6000, help="training images per digit (default: %(default)s)")
    m.add_argument("--test-rows", type=int, default=2000, help="test images per digit (default: %(default)s)")
    m.add_argument("--mnist-epochs", type=int, default=10, help="aevb epochs (default: %(default)s)")
    m.add_argument("--mnist-samples", type=int, default=20, help="aevb n_samples (default: %(default)s)")
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
    sub.add_parser("report", help="write docs/benchmarks/anomaly.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    {"tabular": tabular, "mnist": mnist, "sweep": sweep, "report": report}[args.part](args)


if __name__ == "__main__":
    main()
