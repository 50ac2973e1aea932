"""Fault injection in training: SIGKILL at random moments then --resume, a second trainer on the same run,
full and read-only disks.

The SIGKILL trainings run in real `python -m aevb` subprocesses with one thread, so the
uninterrupted reference and the killed-and-resumed runs execute the very same arithmetic; the other
commands run in this process through `aevb.cli.main` (`aevb_main`: a subprocess each spent ~2 s importing
torch), beside a real second process where one is needed (the lock).
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path
from unittest.mock import ANY

import pytest

import aevb
from aevb_process import (
    aevb_main,
    assert_bitwise_equal,
    metrics,
    one_line_error,
    start,
    subprocess_env,
    tensors,
    trainer_state,
    wait_for,
    without_time,
)

pytestmark = pytest.mark.slow  # subprocesses and training: left out of the quick subset

# 140 steps of a 64-200-2 network on digits; a checkpoint every 3 steps and at each epoch's end
KILL_FLAGS = ["--dataset", "digits", "--epochs", "10", "--hidden", "200", "--checkpoint-every", "3", "--seed", "5"]


@pytest.fixture(scope="module")
def env() -> dict:
    return subprocess_env()


# --- SIGKILL at random moments, then --resume: bitwise the uninterrupted run ----------------


def wait_for_a_new_checkpoint(run: Path, p: subprocess.Popen, timeout: float = 120) -> float:
    """Block until the trainer `p` has written a checkpoint of its own: it is in its training loop."""
    path = run / "checkpoint.safetensors"
    old = path.stat().st_mtime_ns if path.exists() else None
    end = time.monotonic() + timeout
    while not path.exists() or path.stat().st_mtime_ns == old:
        if p.poll() is not None:
            assert p.returncode == 0, p.stderr.read()
            break  # it had nothing left to do
        assert time.monotonic() < end, "no checkpoint appeared"
        time.sleep(0.002)
    return time.monotonic()


def test_sigkill_at_random_points_then_resume_is_bitwise_equal(tmp_path, env):
    ref = start(tmp_path, env, "train", "--out", "ref", "--no-progress", *KILL_FLAGS)
    assert ref.wait(timeout=300) == 0, ref.stderr.read()

    rng = random.Random(1234)
    kills, positions = 0, []
    p = start(tmp_path, env, "train", "--out", "run", "--no-progress", *KILL_FLAGS)
    wait_for(tmp_path / "run" / "config.json", p)
    while True:
        # The kill point is measured in this process's own checkpoint interval, not in the reference's
        # seconds: the two run at different speeds on a loaded machine, and a delay in seconds let the run
        # finish after two kills. Up to one and a half intervals past a checkpoint (about 5 of 140 steps),
        # anywhere in a step or in a checkpoint write; five kills land within the first half of the run.
        previous = wait_for_a_new_checkpoint(tmp_path / "run", p)
        started = wait_for_a_new_checkpoint(tmp_path / "run", p)
        delay = rng.uniform(0.0, 1.5 * (started - previous))
        while time.monotonic() - started < delay and p.poll() is None:
            time.sleep(0.001)
        if p.poll() is not None:  # it finished before this kill point: done
            assert p.returncode == 0, p.stderr.read()
            break
        p.kill()  # SIGKILL: no handler, no cleanup, possibly in the middle of a checkpoint write
        p.wait()
        kills += 1
        state = trainer_state(tmp_path / "run")
        positions.append((state["epoch"], (state.get("position") or {}).get("steps")))
        if kills == 5:  # enough kills: let the last resume finish
            r = aevb_main(tmp_path, ["train", "--resume", "run", "--no-progress"])
            assert r.returncode == 0, r.stderr
            break
        p = start(tmp_path, env, "train", "--resume", "run", "--no-progress")
    assert kills >= 3, "the kill points all fell after the end of training"
    assert any(steps for _, steps in positions), f"no kill left a checkpoint from inside an epoch: {positions}"

    assert_bitwise_equal(
        tensors(tmp_path / "ref" / "model.safetensors"), tensors(tmp_path / "run" / "model.safetensors")
    )
    # optimiser moments, step counts and the RNG stream too
    assert_bitwise_equal(
        tensors(tmp_path / "ref" / "checkpoint.safetensors"), tensors(tmp_path / "run" / "checkpoint.safetensors")
    )
    assert without_time(metrics(tmp_path / "ref")) == without_time(metrics(tmp_path / "run"))
    assert not list((tmp_path / "run").glob(".*.tmp")), "a killed write left its temp file behind"


def test_a_checkpoint_inside_an_epoch_resumes_at_that_very_step(tmp_path):
    # digits: 13 steps of 100 per epoch; a checkpoint every 4 steps (global steps 4, 8, 12, 16, 20...)
    data = aevb.load_dataset("digits")
    model_cfg = aevb.ModelConfig(hidden=(32,))
    cfg = aevb.TrainConfig(epochs=2, checkpoint_every=4, seed=2)
    whole = aevb.train(model_cfg, cfg, tmp_path / "whole", dataset=data)

    def crash_at_step_20(s):  # epoch 2, batch 7, before its checkpoint: the last one is step 16
        if s.epoch == 2 and s.done == 700:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        aevb.train(model_cfg, cfg, tmp_path / "part", dataset=data, on_step=crash_at_step_20)
    state = trainer_state(tmp_path / "part")
    assert state["epoch"] == 1 and state["step"] == 13 and state["position"]["steps"] == 3
    assert state["position"]["done"] == 300
    assert [m["epoch"] for m in metrics(tmp_path / "part")] == [1]
    resumed = aevb.train(None, None, tmp_path / "part", dataset=data, resume=True)
    assert_bitwise_equal(whole.state_dict(), resumed.state_dict())
    assert trainer_state(tmp_path / "part") == {**trainer_state(tmp_path / "whole"), "seconds": ANY}
    assert without_time(metrics(tmp_path / "whole")) == without_time(metrics(tmp_path / "part"))


def test_a_second_trainer_on_the_same_run_is_refused(tmp_path, env):
    p = start(tmp_path, env, "train", "--out", "r", "--no-progress", "--epochs", "100000")
    try:
        wait_for(tmp_path / "r" / "checkpoint.safetensors", p)
        r = aevb_main(tmp_path, ["train", "--resume", "r", "--no-progress"])
        one_line_error(r, "r is being trained by another aevb process", f"(pid {p.pid})", "choose another --out")
        r = aevb_main(tmp_path, ["train", "--out", "r", "--no-progress"])
        one_line_error(r, "already holds a run")
    finally:
        p.kill()
        p.wait()
    # the lock died with its process: SIGKILL leaves no stale lock
    r = aevb_main(tmp_path, ["train", "--resume", "r", "--epochs", str(trainer_state(tmp_path / "r")["epoch"] + 1)])
    assert r.returncode == 0, r.stderr


# --- full disk and read-only run directory --------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path):
    """A fresh, tiny tmpfs mounted at tmp_path/mnt (needs root; skipped only where mounting is impossible)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the full-disk case needs one")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder: Path, leave: int) -> None:
    """Fill the filesystem of `folder` up to `leave` free bytes."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(folder / "filler", "wb") as f:
        f.write(b"\0" * max(free - leave, 0))


def test_full_disk_gives_a_clear_error_and_keeps_the_last_checkpoint(tmpfs, env):
    r = aevb_main(tmpfs, ["train", "--out", "r", "--no-progress", "--epochs", "1", "--hidden", "64"])
    assert r.returncode == 0, r.stderr
    before = tensors(tmpfs / "r" / "checkpoint.safetensors")
    records = metrics(tmpfs / "r")
    sizes = {f: (tmpfs / "r" / f).stat().st_size for f in ("model.safetensors", "checkpoint.safetensors")}
    # room for a new model file beside the old one, not for a new checkpoint beside the old one
    _fill(tmpfs, leave=sizes["model.safetensors"] + 12 * 4096)
    assert sizes["checkpoint.safetensors"] > sizes["model.safetensors"] + 12 * 4096
    r = aevb_main(tmpfs, ["train", "--resume", "r", "--epochs", "3", "--no-progress"])
    one_line_error(r, "cannot write r/checkpoint.safetensors: No space left on device")
    assert_bitwise_equal(before, tensors(tmpfs / "r" / "checkpoint.safetensors"))
    assert metrics(tmpfs / "r") == records or len(metrics(tmpfs / "r")) == 2  # whole records only
    assert not list((tmpfs / "r").glob(".*.tmp"))
    (tmpfs / "filler").unlink()
    r = aevb_main(tmpfs, ["train", "--resume", "r", "--epochs", "2", "--no-progress"])
    assert r.returncode == 0, r.stderr
    assert [m["epoch"] for m in metrics(tmpfs / "r")] == [1, 2]


def test_read_only_run_directory_gives_a_clear_error(tmpfs, env):
    r = aevb_main(tmpfs, ["train", "--out", "r", "--no-progress", "--epochs", "1", "--hidden", "64"])
    assert r.returncode == 0, r.stderr
    before = tensors(tmpfs / "r" / "checkpoint.safetensors")
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    r = aevb_main(tmpfs, ["train", "--resume", "r", "--epochs", "2", "--no-progress"])
    one_line_error(r, "cannot write r/", "Read-only file system")
    r = aevb_main(tmpfs, ["train", "--out", "new", "--no-progress", "--epochs", "1"])
    one_line_error(r, "cannot create run directory new", "Read-only file system")
    assert_bitwise_equal(before, tensors(tmpfs / "r" / "checkpoint.safetensors"))
