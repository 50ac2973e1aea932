"""The run directory around training (aevb.rundir) as `aevb train` and `--resume` see it: a run stopped
before its first checkpoint, what `--resume` says it continues, a finished run, a failed setup; a torn
metrics file on resume, and no overwriting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import load_file

import aevb
from aevb.cli import main
from aevb.rundir import read_metrics
from aevb_process import aevb_main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "8", "--seed", "1", "--no-progress"]


@pytest.fixture(scope="module")
def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


@pytest.mark.slow  # a process killed in its setup, then two runs in this process
def test_a_run_killed_during_its_setup_resumes_to_the_uninterrupted_result(tmp_path, env):
    # The data file is a FIFO: the trainer blocks opening it, inside its setup (the lock is held, no
    # weights yet), for as long as we like; that is where a kill in the first seconds lands.
    x = (np.random.default_rng(0).random((300, 10)) < 0.3).astype(np.float32)
    data = tmp_path / "data.npy"
    os.mkfifo(data)
    argv = ["train", "--dataset", data, "--epochs", "2", *TINY]
    p = subprocess.Popen(
        [sys.executable, "-m", "aevb", *map(str, argv), "--out", "R"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    run, end = tmp_path / "R", time.monotonic() + 120
    while not (run / "config.json").exists() and time.monotonic() < end:
        assert p.poll() is None, p.stderr.read()
        time.sleep(0.01)
    time.sleep(0.2)  # it now waits on the FIFO for its data
    p.kill()
    p.wait()
    assert sorted(f.name for f in run.iterdir()) == [".lock", "config.json"]
    data.unlink()
    np.save(data, x)

    r = aevb_main(tmp_path, ["train", "--resume", "R", "--no-progress"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "resuming R: no checkpoint yet, so training starts at step 0 (epoch 1 of 2)"
    w = aevb_main(tmp_path, [*argv, "--out", "W"])
    assert w.returncode == 0, w.stderr
    assert json.loads((run / "config.json").read_text()) == json.loads((tmp_path / "W" / "config.json").read_text())
    resumed, whole = load_file(str(run / "model.safetensors")), load_file(str(tmp_path / "W" / "model.safetensors"))
    assert resumed.keys() == whole.keys() and all((resumed[k] == whole[k]).all() for k in whole)


def test_a_folder_with_only_a_lock_says_what_to_run_and_the_first_command_accepts_it(tmp_path, capsys):
    run = tmp_path / "R"  # what a kill between creating the folder and writing config.json leaves
    run.mkdir()
    (run / ".lock").touch()
    assert main(["train", "--resume", str(run)]) == 1
    assert capsys.readouterr().err == (
        f"aevb: error: {run} holds no run yet: training was stopped before it wrote config.json; nothing was "
        f"trained, so start it afresh with the command that created it (`aevb train [flags] --out {run}` "
        "accepts this folder as it is)\n"
    )
    assert main(["train", "--epochs", "1", *TINY, "--out", str(run)]) == 0
    assert (run / "model.safetensors").exists()


def test_a_new_run_whose_setup_fails_leaves_no_trace(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("0,1\n1,nan\n" * 20)
    assert main(["train", "--dataset", str(bad), "--epochs", "1", *TINY, "--out", str(tmp_path / "R")]) == 1
    assert "NaN" in capsys.readouterr().err
    assert not (tmp_path / "R").exists()  # the config written before the data was read went with it


def _counters(run: Path) -> dict:
    with safe_open(str(run / "checkpoint.safetensors"), framework="pt") as f:
        return json.loads(f.metadata()["trainer"])


def test_resume_says_what_it_continues_and_when_a_run_is_complete(tmp_path, capsys):
    run = tmp_path / "R"
    model_cfg, cfg = aevb.ModelConfig(hidden=(8,)), aevb.TrainConfig(epochs=2, checkpoint_every=4, seed=1)

    def crash_at_step_20(s):  # digits: 13 steps of 100 per epoch; the last checkpoint is then step 16
        if s.epoch == 2 and s.done == 700:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        aevb.train(model_cfg, cfg, run, on_step=crash_at_step_20)
    state = _counters(run)
    step, into = state["step"] + state["position"]["steps"], state["position"]["done"]
    assert (state["epoch"], step, into) == (1, 16, 300)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"resuming {run} from {run / 'checkpoint.safetensors'} (step {step}, {into} examples into epoch 2); "
        "training to epoch 2"
    )
    assert [line.split()[:2] for line in out[1:-1]] == [["epoch", "2"]]  # only the rest of epoch 2 is trained

    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert capsys.readouterr().out == (
        f"{run} is already complete: 2 of 2 epochs trained (step 26); nothing to do. "
        f"`aevb train --resume {run} --epochs N` with N > 2 trains it further\n"
    )
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before  # nothing rewritten

    assert main(["train", "--resume", str(run), "--epochs", "1"]) == 1
    assert capsys.readouterr().err == (
        f"aevb: error: {run} has trained 2 epochs, more than --epochs 1; give --epochs above 2 to train further\n"
    )
    assert main(["train", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0]
        == f"resuming {run} from {run / 'checkpoint.safetensors'} (step 26, the end of epoch 2); training to epoch 3"
    )
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert _counters(run)["step"] == 39


SMALL = aevb.ModelConfig(hidden=(32,), latent_dim=2)


def test_resume_after_a_crash_between_metrics_and_checkpoint(tmp_path, digits):
    # a record written for an epoch whose checkpoint never landed is dropped and trained again
    aevb.train(SMALL, aevb.TrainConfig(epochs=2), tmp_path / "r", dataset=digits)
    with open(tmp_path / "r" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 3, "valid_elbo": 0.0}) + "\n" + '{"epoch": 4, "val')  # torn line
    aevb.train(None, aevb.TrainConfig(epochs=3), tmp_path / "r", dataset=digits, resume=True)
    records = read_metrics(tmp_path / "r")
    assert [r["epoch"] for r in records] == [1, 2, 3] and records[-1]["valid_elbo"] < -1


def test_refuses_to_overwrite_a_run(tmp_path, digits):
    aevb.train(SMALL, aevb.TrainConfig(epochs=1), tmp_path / "r", dataset=digits)
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    with pytest.raises(aevb.AevbError, match="already holds a run"):
        aevb.train(SMALL, aevb.TrainConfig(epochs=1), tmp_path / "r", dataset=digits)
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before
