"""What benchmarks/anomaly.py's parts share: fitting every detector on one split, and the JSON records.

A record holds the command, when it started, the detectors, the protocol (seeds, subsets, aevb's settings),
the library versions and, per dataset, rows of (method, seed, auc, ap, fit_s, score_s); it is written to
docs/benchmarks/anomaly_<part><shard>.json as the run goes (`benchmarks/anomaly_report.py` reads them).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

import aevb
from aevb.files import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, also when imported by tests
from anomaly_peers import NEEDS_PYOD, PEERS, have_pyod  # noqa: E402
from anomaly_report import TABLE_SCORES, aevb_label  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
DETECTORS = ("aevb", *PEERS)


def run_split(
    x_train,
    x_test,
    y_test,
    seed: int,
    aevb_kw: dict,
    detectors=DETECTORS,
    aevb_scores=TABLE_SCORES,
    aevb_settings: str = "default",
) -> list[dict]:
    """Fit each of `detectors` (names of DETECTORS) on x_train, score x_test; records of (method, seed, auc,
    ap, fit_s, score_s). aevb gives one record per score of `aevb_scores`, all of the same fitted model, named
    by `aevb_label(score, aevb_settings)`."""
    rows = []

    def record(method, anomaly_score, fit_s, score_s):
        s = np.asarray(anomaly_score, dtype=np.float64)  # higher = more anomalous
        auc, ap = float(roc_auc_score(y_test, s)), float(average_precision_score(y_test, s))
        rows.append({"method": method, "seed": seed, "auc": auc, "ap": ap, "fit_s": fit_s, "score_s": score_s})

    for name in detectors:
        t = time.perf_counter()
        if name == "aevb":
            det = aevb.AnomalyDetector(random_state=seed, **aevb_kw).fit(x_train)
            fit_s = time.perf_counter() - t
            for score in aevb_scores:
                t = time.perf_counter()
                values = -det.scores(x_test, score)
                label = aevb_label(score, aevb_settings, det.complexity_weight)
                record(label, values, fit_s, time.perf_counter() - t)
            continue
        score = PEERS[name](x_train, seed)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        values = score(x_test)
        record(name, values, fit_s, time.perf_counter() - t)
    return rows


def pick_detectors(names: list[str] | None) -> list[str]:
    """The detectors to run, in registry order; without pyod the PyOD ones are left out (with a note)."""
    chosen = [d for d in DETECTORS if names is None or d in names]
    if not have_pyod():
        left = [d for d in chosen if d in NEEDS_PYOD]
        if left:
            print(f"pyod is not installed (the `bench` extra): leaving out {', '.join(left)}", file=sys.stderr)
        chosen = [d for d in chosen if d not in NEEDS_PYOD]
    return chosen


def warm_up(detectors: list[str]) -> None:
    """Fit and score each peer once on a small random table, untimed, so that compiling (numba, in PyOD's
    HBOS, COPOD, ECOD) is not counted in the first set's times."""
    x = np.random.default_rng(0).normal(size=(200, 4))
    for name in detectors:
        if name in PEERS:
            PEERS[name](x, 0)(x)


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


def new_record(detectors: list[str], **protocol) -> dict:
    """The JSON record of one invocation: its command, when it started, who ran, the protocol, versions."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {
        "command": " ".join(sys.argv),
        "written": started,
        "detectors": detectors,
        **protocol,
        "versions": versions(),
        "datasets": {},
    }


def save(name: str, results: dict) -> None:
    atomic_write_text(DOCS / f"anomaly_{name}.json", json.dumps(results, indent=1) + "\n")
