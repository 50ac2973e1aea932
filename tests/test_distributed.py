"""Data-parallel training and evaluation with torch.distributed (gloo, CPU), started by torchrun (the main run)
or with the environment torchrun sets (the others).

A run on two processes with the same global batch and seed must follow the single-process run up
to float rounding; evaluation must give the single-process numbers; checkpoints move between world
sizes; a half-set environment and a dead rank end in one error line within a bounded time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aevb_process import aevb_main, aevb_ranks, ok, start_ranks

pytestmark = pytest.mark.slow  # subprocesses and training: left out of the quick subset

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--dataset", "digits", "--hidden", "32", "--seed", "3", "--no-progress"]
EPOCHS = 20  # 13 steps per epoch on digits: 260 steps


@pytest.fixture(scope="module")
def env() -> dict:
    pythonpath = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    clean = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    return {**clean, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath}


def aevb(cwd: Path, env: dict, *args, procs: int = 1, torchrun: bool = False) -> subprocess.CompletedProcess:
    """`python -m aevb ARGS` (it must succeed); with `procs` > 1, that many ranks: under torchrun, or as
    `aevb_ranks` starts them."""
    if procs > 1 and not torchrun:
        return aevb_ranks(cwd, env, procs, *args)
    launch = [sys.executable, "-m", "aevb"]
    if procs > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
        launch += ["-m", "aevb"]
    r = subprocess.run([*launch, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def assert_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, env):
    """The same run trained by two processes (torchrun, gloo) and, meanwhile, by one (in this process)."""
    d = tmp_path_factory.mktemp("dist")
    with ThreadPoolExecutor(1) as pool:
        two = pool.submit(aevb, d, env, "train", "--out", "two", "--epochs", EPOCHS, *FLAGS, procs=2, torchrun=True)
        ok(aevb_main(d, ["train", "--out", "one", "--epochs", EPOCHS, *FLAGS]))
        out = two.result()
    return d, out


def test_two_processes_follow_the_single_process_run(runs):
    d, out = runs
    assert "training on 2 processes; global batch 100" in out.stdout
    assert out.stdout.count("run saved in two") == 1  # rank 0 alone reports and writes
    assert_close(weights(d / "one"), weights(d / "two"), atol=1e-4)  # after 260 steps
    m1 = [json.loads(x) for x in (d / "one" / "metrics.jsonl").read_text().splitlines()]
    m2 = [json.loads(x) for x in (d / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in m1] == [r["step"] for r in m2] == [13 * e for e in range(1, EPOCHS + 1)]
    for a, b in zip(m1, m2):
        assert abs(a["train_elbo"] - b["train_elbo"]) < 1e-3 and abs(a["valid_elbo"] - b["valid_elbo"]) < 1e-3
    # the saved keys are the VAE's own: no DDP or wrapper prefix
    assert all(k.startswith(("encoder.", "decoder.")) for k in weights(d / "two"))


@pytest.mark.parametrize("k", [1000, 300])  # 2 noise chunks: ranks share samples; 1 chunk: ranks share examples
def test_distributed_eval_equals_single_process_eval(runs, env, k):
    d, _ = runs
    ok(aevb_main(d, ["eval", "one", "--k", k, "--split", "test", "--no-progress"]))
    single = json.loads((d / "one" / "eval_test.json").read_text())
    aevb(d, env, "eval", "one", "--k", k, "--split", "test", "--no-progress", procs=2)
    shared = json.loads((d / "one" / "eval_test.json").read_text())
    assert single["processes"] == 1 and shared["processes"] == 2
    for key in ("log_likelihood", "log_likelihood_se", "elbo", "kl", "bits_per_dim"):
        assert shared[key] == pytest.approx(single[key], rel=1e-6, abs=1e-5), key


def test_resume_across_world_sizes(tmp_path, env, runs):
    d, _ = runs
    # 2 processes for 10 epochs, then 1 process to 20: the single-process run's parameters
    # (the single-process halves run in this process: each subprocess spent ~2 s importing torch)
    aevb(tmp_path, env, "train", "--out", "a", "--epochs", EPOCHS // 2, *FLAGS, procs=2)
    ok(aevb_main(tmp_path, ["train", "--resume", "a", "--epochs", EPOCHS, "--no-progress"]))
    assert_close(weights(d / "one"), weights(tmp_path / "a"), atol=1e-4)
    # and the other way round
    ok(aevb_main(tmp_path, ["train", "--out", "b", "--epochs", EPOCHS // 2, *FLAGS]))
    aevb(tmp_path, env, "train", "--resume", "b", "--epochs", EPOCHS, "--no-progress", procs=2)
    assert_close(weights(d / "one"), weights(tmp_path / "b"), atol=1e-4)


def test_a_half_set_environment_is_a_clear_error(tmp_path, env):
    r = subprocess.run(
        [sys.executable, "-m", "aevb", "train", "--out", "r", *FLAGS],
        cwd=tmp_path,
        env={**env, "RANK": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "aevb: error: torch.distributed environment is half set: RANK given but WORLD_SIZE, MASTER_ADDR, "
        "MASTER_PORT missing; start with torchrun, or unset them all for a single process"
    )
    assert not (tmp_path / "r").exists()


def test_when_a_rank_dies_the_others_stop_within_the_timeout(tmp_path, env):
    ranks = start_ranks(tmp_path, env, 2, "train", "--out", "r", "--epochs", 100000, "--dist-timeout", 15, *FLAGS)
    try:
        end = time.monotonic() + 120
        while not (tmp_path / "r" / "checkpoint.safetensors").exists():
            assert time.monotonic() < end and ranks[0].poll() is None, ranks[0].stderr.read()
            time.sleep(0.05)
        ranks[1].kill()  # SIGKILL: rank 1 vanishes without a word
        t = time.monotonic()
        _, err = ranks[0].communicate(timeout=60)
        waited = time.monotonic() - t
    finally:
        for p in ranks:
            p.kill()
            p.wait()
    assert ranks[0].returncode == 1 and waited < 30
    last = err.strip().splitlines()[-1]
    assert last.startswith("aevb: error: rank 0: another process of this run died or stopped answering within 15 s")
    assert "Traceback" not in err


def test_a_conditional_run_on_two_processes_follows_one(tmp_path, env):
    """Labels travel with their rows: each rank's shard of a minibatch, and of an evaluation (k = 300:
    the ranks share the examples), is conditioned on its own rows' labels."""
    flags = [*FLAGS, "--condition-on", "labels", "--epochs", 5]
    with ThreadPoolExecutor(1) as pool:
        two = pool.submit(aevb, tmp_path, env, "train", "--out", "two", *flags, procs=2)
        ok(aevb_main(tmp_path, ["train", "--out", "one", *flags]))
        two.result()
    assert_close(weights(tmp_path / "one"), weights(tmp_path / "two"), atol=1e-4)
    results = []
    ok(aevb_main(tmp_path, ["eval", "one", "--k", 300, "--no-progress"]))
    results.append(json.loads((tmp_path / "one" / "eval_test.json").read_text()))
    aevb(tmp_path, env, "eval", "one", "--k", 300, "--no-progress", procs=2)
    results.append(json.loads((tmp_path / "one" / "eval_test.json").read_text()))
    assert results[0]["conditioned_on"] == "labels"
    assert results[1]["log_likelihood"] == pytest.approx(results[0]["log_likelihood"], rel=1e-6, abs=1e-5)
