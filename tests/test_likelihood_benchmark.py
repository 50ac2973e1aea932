"""benchmarks/likelihood.py end to end on the built-in digits: its records hold what an independent
evaluation of the same checkpoint gives, a second invocation resumes the run, and the page and curves are written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import aevb
from aevb.checkpoint import read_config
from aevb.evaluate import log_likelihood, summarize
from aevb.preprocess import run_data
from aevb.rundir import progress, read_metrics

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import likelihood  # noqa: E402

K = 20
TRAIN = ["--dataset", "digits", "--hidden", "16", "--latent-dim", "2", "--epochs", "1000"]


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "likelihood.py"), "--docs", str(tmp_path / "docs"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return res


def _independent(run: Path) -> tuple[float, float]:
    """The test log p(x) of the run's saved model, estimated here as `aevb eval --k K --seed 0` defines it."""
    model, (_, train_cfg) = aevb.load(run), read_config(run)
    x, _, _ = run_data(model.config, train_cfg.binarize, train_cfg.dataset, "test")
    return summarize(log_likelihood(model, x, k=K, seed=0))


def test_eval_times_are_the_ones_within_the_budget_then_the_budget():
    assert likelihood.eval_times(120, [60, 15, 200, 120]) == [15, 60, 120]
    assert likelihood.eval_times(0.5, []) == [0.5]


@pytest.mark.slow  # four `aevb` processes
def test_the_benchmark_measures_resumes_and_reports(tmp_path):
    common = ["--k", str(K), "--runs-dir", str(tmp_path / "runs")]
    records_file, run = tmp_path / "docs" / "likelihood_tiny.json", tmp_path / "runs" / "tiny"
    _bench(tmp_path, "run", "tiny", "--minutes", "0.004", "--eval-at", *common, "--", *TRAIN)
    first = json.loads(records_file.read_text())
    assert first["train_args"] == TRAIN and len(first["records"]) == 1
    r1 = first["records"][0]
    assert (r1["target_minutes"], r1["k"], r1["examples"], r1["binarize"]) == (0.004, K, 300, "dynamic")
    assert r1["minutes"] == progress(run)["minutes"] >= 0.004 and not r1["finished"]
    assert r1["steps"] == progress(run)["step"] and r1["epochs"] == pytest.approx(progress(run)["epochs"])
    assert (r1["log_likelihood"], r1["log_likelihood_se"]) == pytest.approx(_independent(run), abs=1e-9)
    assert "--time-limit 0.004" in r1["train_command"] and f"--k {K}" in r1["eval_command"]
    assert len(r1["git_commit"]) >= 40 and r1["machine"]["cores"] >= 1

    # the next invocation carries on: the stored train args, the run resumed, the first record kept
    _bench(tmp_path, "run", "tiny", "--minutes", "0.008", "--eval-at", "0.004", *common)
    records = json.loads(records_file.read_text())["records"]
    assert records[0] == r1 and len(records) == 2
    r2 = records[1]
    assert r2["train_command"].startswith(f"aevb train --resume {run} --time-limit 0.008")
    assert r2["steps"] > r1["steps"] and r2["epochs"] > r1["epochs"] and r2["minutes"] >= 0.008
    assert r2["steps"] == progress(run)["step"]  # 0.008 minutes in all, not 0.004 + 0.008
    assert r2["minutes"] < 0.004 + 0.008  # the time counted over both invocations
    epochs = [m["epoch"] for m in read_metrics(run)]
    assert epochs == list(range(1, len(epochs) + 1))  # one history, no epoch trained twice
    assert (r2["log_likelihood"], r2["log_likelihood_se"]) == pytest.approx(_independent(run), abs=1e-9)

    # all measured: a third invocation trains nothing and keeps the records
    before = progress(run)
    _bench(tmp_path, "run", "tiny", "--minutes", "0.008", "--eval-at", "0.004", *common)
    assert json.loads(records_file.read_text())["records"] == records and progress(run) == before

    png = (tmp_path / "docs" / "likelihood.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    page = (tmp_path / "docs" / "likelihood.md").read_text()
    for r in records:
        assert f"{r['log_likelihood']:.2f} ± {r['log_likelihood_se']:.2f}" in page
        assert r["train_command"] in page and r["eval_command"] in page
    for number in ("-86.76", "-84.78", "-85.33", "-82.9", "-85.79", "-86.82", "-92.85", "-90.17"):
        assert number in page
    assert "![test log p(x) against training minutes](likelihood.png)" in page
    assert "## Not reached, and why" in page and "digits test, not the MNIST test set" in page


@pytest.mark.slow  # a subprocess: over 3 s
def test_other_train_args_for_a_started_run_are_refused(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    stored = {"name": "x", "run": str(tmp_path / "runs" / "x"), "train_args": TRAIN, "records": []}
    (docs / "likelihood_x.json").write_text(json.dumps(stored))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "likelihood.py"), "--docs", str(docs), "run", "x"]
    cmd += ["--runs-dir", str(tmp_path / "runs"), "--", "--dataset", "digits"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "was started with" in res.stderr and not (tmp_path / "runs").exists()
