"""benchmarks/likelihood.py end to end on the built-in digits: its records hold what an independent
evaluation of the same checkpoint gives, a second invocation resumes the run, and the page and curves are written."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import aevb
from aevb.checkpoint import read_config
from aevb.evaluate import log_likelihood, summarize
from aevb.preprocess import run_data
from aevb.rundir import progress, read_metrics
from aevb_process import aevb_main

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


def _bench_here(tmp_path: Path, monkeypatch, *args: str) -> None:
    """`_bench` in this process, its `aevb` commands too (each subprocess spent ~2 s importing torch): for the
    invocations after the first, which `_bench` runs end to end."""

    def call(cmd: list[str]) -> float:
        assert cmd[:3] == [sys.executable, "-m", "aevb"], cmd
        t = time.perf_counter()
        r = aevb_main(tmp_path, cmd[3:])
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        return time.perf_counter() - t

    monkeypatch.setattr(likelihood, "_call", call)
    likelihood.main(["--docs", str(tmp_path / "docs"), *args])


def _independent(run: Path) -> tuple[float, float]:
    """The test log p(x) of the run's saved model, estimated here as `aevb eval --k K --seed 0` defines it."""
    model, (_, train_cfg) = aevb.load(run), read_config(run)
    x, _, _ = run_data(model.config, train_cfg.binarize, train_cfg.dataset, "test")
    return summarize(log_likelihood(model, x, k=K, seed=0))


def test_eval_times_are_the_ones_within_the_budget_then_the_budget():
    assert likelihood.eval_times(120, [60, 15, 200, 120]) == [15, 60, 120]
    assert likelihood.eval_times(0.5, []) == [0.5]


@pytest.mark.slow  # two `aevb` processes
def test_the_benchmark_measures_resumes_and_reports(tmp_path, monkeypatch):
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
    assert len(r1["machine"]["load_average_1_5_15"]) == 3  # how busy the machine was (Linux)

    # the run is kept, and lost with its machine: the next invocation puts the copy back and carries on
    # (the stored train args, the run resumed, the first record kept)
    kept = tmp_path / "kept"
    where = ["--runs-dir", str(tmp_path / "runs"), "--kept", str(kept)]
    likelihood.main(["--docs", str(tmp_path / "docs"), "keep", "tiny", *where])
    assert sorted(f.name for f in (kept / "tiny").iterdir()) == sorted(likelihood.KEPT_FILES)
    before_loss = {f: (run / f).read_bytes() for f in likelihood.KEPT_FILES}
    shutil.rmtree(run)
    again = ["run", "tiny", "--minutes", "0.008", "--eval-at", "0.004", "--k", str(K), *where]
    _bench_here(tmp_path, monkeypatch, *again)
    assert (kept / "tiny" / "checkpoint.safetensors").read_bytes() == before_loss["checkpoint.safetensors"]
    records = json.loads(records_file.read_text())["records"]
    assert records[0] == r1 and len(records) == 2
    r2 = records[1]
    assert r2["train_command"].startswith(f"aevb train --resume {run} --time-limit 0.008")
    assert read_metrics(run)[: len(before_loss["metrics.jsonl"].splitlines())] == [
        json.loads(line) for line in before_loss["metrics.jsonl"].splitlines()
    ]
    assert r2["steps"] > r1["steps"] and r2["epochs"] > r1["epochs"] and r2["minutes"] >= 0.008
    assert r2["steps"] == progress(run)["step"]  # 0.008 minutes in all, not 0.004 + 0.008
    assert r2["minutes"] < 0.004 + 0.008  # the time counted over both invocations
    epochs = [m["epoch"] for m in read_metrics(run)]
    assert epochs == list(range(1, len(epochs) + 1))  # one history, no epoch trained twice
    assert (r2["log_likelihood"], r2["log_likelihood_se"]) == pytest.approx(_independent(run), abs=1e-9)

    # all measured: a third invocation trains nothing and keeps the records
    before = progress(run)
    _bench_here(tmp_path, monkeypatch, *again)
    assert json.loads(records_file.read_text())["records"] == records and progress(run) == before

    png = (tmp_path / "docs" / "likelihood.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    page = (tmp_path / "docs" / "likelihood.md").read_text()
    for r in records:
        assert f"{r['log_likelihood']:.2f} ± {r['log_likelihood_se']:.2f}" in page
        assert r["train_command"] in page and r["eval_command"] in page
        assert f"cores, load {r['machine']['load_average_1_5_15'][2]:g} |" in page
        speed = f"| {r['epochs']:.2f} | {60 * r['minutes'] / r['epochs']:.2f} | {r['steps']} |"  # s a pass
        assert speed in page
    for number in ("-86.76", "-84.78", "-85.33", "-82.9", "-85.79", "-86.82", "-92.85", "-90.17"):
        assert number in page
    assert "![test log p(x) against training minutes](likelihood.png)" in page
    assert "## Not reached, and why" in page and "digits test, not the MNIST test set" in page


def _refusal(tmp_path: Path, records: list[dict], *train_args: str) -> str:
    """What `likelihood.py run x` exits with (its message) when x's records are `records`."""
    docs = tmp_path / "docs"
    docs.mkdir()
    stored = {"name": "x", "run": str(tmp_path / "runs" / "x"), "train_args": TRAIN, "records": records}
    (docs / "likelihood_x.json").write_text(json.dumps(stored))
    argv = ["--docs", str(docs), "run", "x", "--runs-dir", str(tmp_path / "runs"), "--minutes", "1"]
    argv += ["--kept", str(tmp_path / "kept")]
    with pytest.raises(SystemExit) as e:
        likelihood.main([*argv, *(["--", *train_args] if train_args else [])])
    assert not (tmp_path / "runs").exists()  # nothing trained
    assert json.loads((docs / "likelihood_x.json").read_text()) == stored  # the records kept
    return str(e.value.code)


def test_other_train_args_for_a_started_run_are_refused(tmp_path):
    assert "was started with" in _refusal(tmp_path, [], "--dataset", "digits")


def test_a_lost_run_is_reported_as_stopped_not_in_progress(tmp_path):
    import likelihood_report

    record = {
        "target_minutes": 300.0, "minutes": 300.0, "epochs": 1820.1, "steps": 4550197, "finished": False,
        "log_likelihood": -88.08, "log_likelihood_se": 0.24, "k": 5000, "examples": 10000,
        "data": "mnist test", "binarize": "dynamic",
    }  # fmt: skip
    d = {"name": "x", "run": "/gone/x", "train_args": TRAIN, "records": [record], "budget_minutes": 900}
    assert "- `x`: in progress, 300.0 of 900 minutes trained so far." in likelihood_report.not_reached([d])
    d["lost"] = "the machine was replaced at epoch 2,431."
    lines = likelihood_report.not_reached([d])
    assert lines[0] == "- `x`: stopped for good after 300.0 minutes: the machine was replaced at epoch 2,431."
    assert not any("in progress" in line for line in lines)
    # one table row: the best within each goal's minutes, the last against the one-layer VAE (no recipe here)
    assert lines[-1] == (
        "| `x` | lost | no measurement | no measurement | no measurement | "
        "1.32 short of VAE, 1 stochastic layer (50-D) (-86.76) after 1820.1 passes, 300.0 min |"
    )
    assert lines[-3].startswith("| run | state | within 15 min (goal -88.0) |")
    # a run of a recipe is held against that recipe's published number; a goal met says so
    d.update(train_args=["--recipe", "burda-iwae-1l-k5"], records=[{**record, "minutes": 110.0}])
    d["records"][0]["log_likelihood"] = -83.5
    row = likelihood_report.not_reached([d])[-1]
    assert "| reached: -83.50 at 110.0 min | 2.04 above burda-iwae-1l-k5 (-85.54) after 1820.1 passes" in row


def test_the_gradient_table_pairs_runs_that_differ_only_in_the_gradient():
    import likelihood_report

    def run(name, args, ll, lost=None):
        r = {"log_likelihood": ll, "log_likelihood_se": 0.25, "epochs": 100.0, "minutes": 19.5}
        return {"name": name, "train_args": args, "records": [r], **({"lost": lost} if lost else {})}

    base = ["--recipe", "burda-iwae-1l-k5", "--seed", "1"]
    runs = [
        run("a", base, -89.0),
        run("b", [*base, "--gradient", "dreg"], -88.5),
        run("c", [*base[:2], "--gradient", "stl", *base[2:]], -89.25),  # the flag anywhere among the args
        run("d", ["--recipe", "burda-iwae-1l-k5", "--gradient", "dreg"], -87.0),  # another seed: no partner
        run("e", [*base, "--gradient", "dreg"], -80.0, lost="gone"),  # a lost run is left out
    ]
    lines = likelihood_report.gradient_table(runs)
    cell = "-89.00 ± 0.25 (100 passes, 19.5 min)"
    assert [line for line in lines if line.startswith("| `")] == [
        f"| `--recipe burda-iwae-1l-k5 --seed 1` | {cell} | dreg | -88.50 ± 0.25 (100 passes, 19.5 min) | +0.50 |",
        f"| `--recipe burda-iwae-1l-k5 --seed 1` | {cell} | stl | -89.25 ± 0.25 (100 passes, 19.5 min) | -0.25 |",
    ]
    assert "dreg: mean Δ +0.50 nats over 1 pair(s), better in 1." in lines
    assert "stl: mean Δ -0.25 nats over 1 pair(s), better in 0." in lines
    assert likelihood_report.gradient_table(runs[1:]) == []


def test_keep_refuses_a_run_being_trained_and_a_folder_that_is_no_run(tmp_path):
    from aevb.files import RunLock

    run, kept = tmp_path / "runs" / "x", tmp_path / "kept"
    run.mkdir(parents=True)
    argv = ["keep", "x", "--runs-dir", str(tmp_path / "runs"), "--kept", str(kept)]
    with pytest.raises(SystemExit, match="has no config.json, checkpoint.safetensors, model.safetensors, metrics"):
        likelihood.main(argv)
    for f in likelihood.KEPT_FILES:
        (run / f).write_text("{}")
    with RunLock(run), pytest.raises(SystemExit, match="is being trained by another aevb process"):
        likelihood.main(argv)
    assert not kept.exists() or list(kept.iterdir()) == []  # no half copy


def test_a_run_kept_before_its_first_measurement_goes_on_from_the_copy(tmp_path, monkeypatch):
    # a long run stopped and kept before any evaluation time: its records hold only its train args, and the
    # next machine must resume the copy, not start the train args again
    docs, runs, kept = tmp_path / "docs", tmp_path / "runs", tmp_path / "kept"
    argv = ["run", "x", "--runs-dir", str(runs), "--kept", str(kept), "--k", str(K)]
    monkeypatch.setattr(likelihood, "_evaluate", lambda *a: pytest.fail("no evaluation: the run is interrupted"))
    monkeypatch.setattr(likelihood, "_call", lambda cmd: sys.exit("interrupted"))  # aevb train stopped at once
    with pytest.raises(SystemExit, match="interrupted"):
        likelihood.main(["--docs", str(docs), *argv, "--minutes", "1", "--eval-at", "--", *TRAIN])
    assert json.loads((docs / "likelihood_x.json").read_text())["train_args"] == TRAIN  # on record already
    monkeypatch.undo()
    assert aevb_main(tmp_path, ["train", *TRAIN, "--out", str(runs / "x"), "--time-limit", "0.002"]).returncode == 0
    likelihood.main(["--docs", str(docs), "keep", "x", "--runs-dir", str(runs), "--kept", str(kept)])
    history, p = read_metrics(runs / "x"), progress(runs / "x")
    on_record = json.loads((docs / "likelihood_x.json").read_text())["kept"]  # how far the copy is, on record
    assert (on_record["epoch"], on_record["minutes"]) == (p["epoch"], p["minutes"])
    page = (docs / "likelihood.md").read_text()
    assert f"- `x`: no measurement yet; kept at {p['epochs']:.1f} passes, {p['minutes']:.1f} training minutes" in page
    assert f"\nNo measurement yet; kept at {p['epochs']:.1f} passes" in page  # its section: no empty table
    shutil.rmtree(runs / "x")
    _bench_here(tmp_path, monkeypatch, *argv, "--minutes", "0.004", "--eval-at")
    (record,) = json.loads((docs / "likelihood_x.json").read_text())["records"]
    assert record["train_command"].startswith(f"aevb train --resume {runs / 'x'} --time-limit 0.004")
    assert read_metrics(runs / "x")[: len(history)] == history and record["minutes"] >= 0.004


def test_a_run_whose_directory_is_gone_is_not_started_again_under_its_records(tmp_path):
    # a fresh machine without the run's checkpoint: a new run would be recorded as the old one's continuation
    record = {"target_minutes": 0.5, "minutes": 0.5, "finished": False}
    message = _refusal(tmp_path, [record])
    assert message == (
        f"likelihood.py: x's run {tmp_path / 'runs' / 'x'} is gone (its records reach 0.5 minutes) and "
        f"{tmp_path / 'kept' / 'x'} holds no copy; put its last checkpoint back there to continue it, or start "
        "the train args again under another NAME"
    )
