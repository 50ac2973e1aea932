"""Fault injection: SIGKILL during training, a second trainer, full and read-only disks, malicious
pickles in every place a file is read, divergence, and run names that try to leave their folder.

Every training here runs in a real `python -m aevb` subprocess with one thread, so the
uninterrupted reference and the killed-and-resumed runs execute the very same arithmetic.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest.mock import ANY

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import aevb
import aevb.data.builtin
from aevb.data.load import split_rows

ROOT = Path(__file__).resolve().parents[1]
# 140 steps of a 64-200-2 network on digits; a checkpoint every 3 steps and at each epoch's end
KILL_FLAGS = ["--dataset", "digits", "--epochs", "10", "--hidden", "200", "--checkpoint-every", "3", "--seed", "5"]


@pytest.fixture(scope="module")
def env() -> dict:
    pythonpath = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath}


def aevb_cmd(cwd: Path, env: dict, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "aevb", *map(str, args)]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def start(cwd: Path, env: dict, *args) -> subprocess.Popen:
    argv = [sys.executable, "-m", "aevb", *map(str, args)]
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def one_line_error(r: subprocess.CompletedProcess, *fragments: str) -> str:
    """The single `aevb: error:` line of a failed command, checked to contain each fragment."""
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aevb: error: "), r.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def wait_for(path: Path, p: subprocess.Popen, timeout: float = 120) -> float:
    """Block until `path` exists (the trainer has loaded its data and started); returns the time."""
    end = time.monotonic() + timeout
    while not path.exists():
        assert p.poll() is None, p.stderr.read() if p.stderr else p.returncode
        assert time.monotonic() < end, f"{path} did not appear"
        time.sleep(0.005)
    return time.monotonic()


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def trainer_state(run: Path) -> dict:
    with safe_open(str(run / "checkpoint.safetensors"), framework="pt") as f:
        return json.loads(f.metadata()["trainer"])


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# --- 1. SIGKILL at random moments, then --resume: bitwise the uninterrupted run ----------------


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
    wait_for(tmp_path / "ref" / "config.json", ref)
    started = wait_for_a_new_checkpoint(tmp_path / "ref", ref)
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    last_write = (tmp_path / "ref" / "checkpoint.safetensors").stat().st_mtime_ns / 1e9
    training = last_write - (time.time() - (time.monotonic() - started))  # the training loop alone
    assert training > 0

    rng = random.Random(1234)
    kills, positions = 0, []
    p = start(tmp_path, env, "train", "--out", "run", "--no-progress", *KILL_FLAGS)
    wait_for(tmp_path / "run" / "config.json", p)
    while True:
        started = wait_for_a_new_checkpoint(tmp_path / "run", p)
        delay = rng.uniform(0.0, training / 5)  # five kills land, on average, before half of the run
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
            r = aevb_cmd(tmp_path, env, "train", "--resume", "run", "--no-progress")
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
        r = aevb_cmd(tmp_path, env, "train", "--resume", "r", "--no-progress")
        one_line_error(r, "r is being trained by another aevb process", f"(pid {p.pid})", "choose another --out")
        r = aevb_cmd(tmp_path, env, "train", "--out", "r", "--no-progress")
        one_line_error(r, "already holds a run")
    finally:
        p.kill()
        p.wait()
    # the lock died with its process: SIGKILL leaves no stale lock
    r = aevb_cmd(tmp_path, env, "train", "--resume", "r", "--epochs", str(trainer_state(tmp_path / "r")["epoch"] + 1))
    assert r.returncode == 0, r.stderr


# --- 2. full disk and read-only run directory --------------------------------------------------


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
    r = aevb_cmd(tmpfs, env, "train", "--out", "r", "--no-progress", "--epochs", "1", "--hidden", "64")
    assert r.returncode == 0, r.stderr
    before = tensors(tmpfs / "r" / "checkpoint.safetensors")
    records = metrics(tmpfs / "r")
    sizes = {f: (tmpfs / "r" / f).stat().st_size for f in ("model.safetensors", "checkpoint.safetensors")}
    # room for a new model file beside the old one, not for a new checkpoint beside the old one
    _fill(tmpfs, leave=sizes["model.safetensors"] + 12 * 4096)
    assert sizes["checkpoint.safetensors"] > sizes["model.safetensors"] + 12 * 4096
    r = aevb_cmd(tmpfs, env, "train", "--resume", "r", "--epochs", "3", "--no-progress")
    one_line_error(r, "cannot write r/checkpoint.safetensors: No space left on device")
    assert_bitwise_equal(before, tensors(tmpfs / "r" / "checkpoint.safetensors"))
    assert metrics(tmpfs / "r") == records or len(metrics(tmpfs / "r")) == 2  # whole records only
    assert not list((tmpfs / "r").glob(".*.tmp"))
    (tmpfs / "filler").unlink()
    r = aevb_cmd(tmpfs, env, "train", "--resume", "r", "--epochs", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert [m["epoch"] for m in metrics(tmpfs / "r")] == [1, 2]


def test_read_only_run_directory_gives_a_clear_error(tmpfs, env):
    r = aevb_cmd(tmpfs, env, "train", "--out", "r", "--no-progress", "--epochs", "1", "--hidden", "64")
    assert r.returncode == 0, r.stderr
    before = tensors(tmpfs / "r" / "checkpoint.safetensors")
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    r = aevb_cmd(tmpfs, env, "train", "--resume", "r", "--epochs", "2", "--no-progress")
    one_line_error(r, "cannot write r/", "Read-only file system")
    r = aevb_cmd(tmpfs, env, "train", "--out", "new", "--no-progress", "--epochs", "1")
    one_line_error(r, "cannot create run directory new", "Read-only file system")
    assert_bitwise_equal(before, tensors(tmpfs / "r" / "checkpoint.safetensors"))


# --- 3. divergence: stop naming the step, or skip and count ------------------------------------


def _table_with_poison(path: Path, poison_rows: list[int]) -> None:
    x = np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32)
    x[poison_rows] = 3e38  # (x - mean)^2 overflows float32: the loss of any batch holding one is inf
    np.save(path, x)


def test_divergence_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path, env):
    _table_with_poison(tmp_path / "t.npy", [])
    flags = ["--dataset", "t.npy", "--likelihood", "gaussian", "--batch-size", "32", "--no-progress"]
    r = aevb_cmd(tmp_path, env, "train", "--out", "r", "--epochs", "1", *flags)
    assert r.returncode == 0, r.stderr
    before = tensors(tmp_path / "r" / "checkpoint.safetensors")
    # the same run, resumed with a data file that now holds a poisoned row
    train_rows = split_rows(400)[0]
    _table_with_poison(tmp_path / "t.npy", [int(train_rows[0])])
    r = aevb_cmd(tmp_path, env, "train", "--resume", "r", "--epochs", "2", "--no-progress")
    line = one_line_error(r, "training diverged at step ", "(epoch 2, batch ", "the loss is NaN or inf")
    assert "keeps its last good checkpoint (step 10, end of epoch 1)" in line
    step = int(line.split("at step ")[1].split()[0])
    assert 11 <= step <= 20  # epoch 2 has 10 steps of 32 (320 train rows)
    assert_bitwise_equal(before, tensors(tmp_path / "r" / "checkpoint.safetensors"))


def test_nonfinite_skip_counts_exactly_the_poisoned_batches(tmp_path, env):
    train_rows = split_rows(400)[0]  # the documented split: row i of the file -> train position
    poisoned = [int(train_rows[i]) for i in (3, 50, 51, 200)]
    _table_with_poison(tmp_path / "t.npy", poisoned)
    flags = ["--dataset", "t.npy", "--likelihood", "gaussian", "--batch-size", "32", "--seed", "7"]
    r = aevb_cmd(tmp_path, env, "train", "--out", "r", "--epochs", "1", "--nonfinite", "skip", "--no-progress", *flags)
    assert r.returncode == 0, r.stderr
    # epoch 1's order is the first draw of the training generator
    perm = torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(7))
    bad = {3, 50, 51, 200}
    expected = sum(1 for i in range(0, len(perm), 32) if bad & set(perm[i : i + 32].tolist()))
    (record,) = metrics(tmp_path / "r")
    assert record["epoch_skipped_steps"] == record["skipped_steps"] == expected >= 2
    assert all(torch.isfinite(t).all() for t in tensors(tmp_path / "r" / "model.safetensors").values())


# --- 4. no pickle is ever loaded ------------------------------------------------------------------


class _Payload:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _pickle_bytes(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker), protocol=4)


def _npy_object(marker: Path) -> bytes:
    b = io.BytesIO()
    np.save(b, np.array([_Payload(marker), 1], dtype=object), allow_pickle=True)
    return b.getvalue()


def _npz_object(marker: Path) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        z.writestr("X.npy", _npy_object(marker))
    return b.getvalue()


def _torch_save(marker: Path) -> bytes:
    b = io.BytesIO()
    torch.save({"w": _Payload(marker)}, b)
    return b.getvalue()


def test_sanity_the_payloads_do_run_code_when_unpickled(tmp_path):
    # the test below is only meaningful if these files really execute code in a careless loader
    marker = tmp_path / "m"
    pickle.loads(_pickle_bytes(marker))
    assert marker.exists()
    marker.unlink()
    np.load(io.BytesIO(_npy_object(marker)), allow_pickle=True)
    assert marker.exists()
    marker.unlink()
    torch.load(io.BytesIO(_torch_save(marker)), weights_only=False)
    assert marker.exists()


PAYLOADS = {"pickle": _pickle_bytes, "torch.save": _torch_save, "npy-object": _npy_object, "npz-object": _npz_object}
RUN_FILES = ("model.safetensors", "checkpoint.safetensors", "config.json", "metrics.jsonl")
BUILTIN_FILES = (
    ("mnist", "mnist", "train-images-idx3-ubyte.gz"),
    ("binarized-mnist", "binarized-mnist", "binarized_mnist_train.amat"),
    ("frey-face", "frey-face", "frey_rawface.mat"),
)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("good") / "run"
    aevb.train(aevb.ModelConfig(hidden=(16,)), aevb.TrainConfig(epochs=1), run)
    return run


def _plant(path: Path, payload: str, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PAYLOADS[payload](marker))
    return path


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_malicious_file_in_each_place_the_library_reads_runs_nothing(tmp_path, good_run, payload):
    from aevb.checkpoint import load_checkpoint, read_config
    from aevb.cli.train import read_config_file
    from aevb.rundir import read_metrics

    marker = tmp_path / "PWNED"
    for fname in RUN_FILES:
        run = tmp_path / f"run-{fname}"
        shutil.copytree(good_run, run)
        _plant(run / fname, payload, marker)
        if fname == "metrics.jsonl":  # JSON lines: a pickle holds no record
            assert read_metrics(run) == []
            continue
        with pytest.raises(aevb.CheckpointError):
            if fname == "checkpoint.safetensors":
                model = aevb.VAE(read_config(good_run)[0])
                load_checkpoint(run, model, torch.optim.Adam(model.parameters()), torch.Generator())
            else:
                aevb.load(run)
    for suffix in (".npy", ".npz", ".csv"):
        path = _plant(tmp_path / f"user{suffix}", payload, marker)
        with pytest.raises(aevb.DataError):
            aevb.load_dataset(str(path))
    for name, folder, fname in BUILTIN_FILES:
        data_dir = tmp_path / f"data-{name}"
        _plant(data_dir / folder / fname, payload, marker)
        for other in aevb.data.builtin.BUILTIN[name].files:  # the real files beside it, but for this one
            if other.name != fname:
                (data_dir / folder / other.name).write_bytes(b"")
        with pytest.raises(aevb.DataError):
            aevb.load_dataset(name, data_dir, download=False)
    with pytest.raises(aevb.AevbError):
        read_config_file(str(_plant(tmp_path / "cfg.json", payload, marker)))
    assert not marker.exists(), "code in a file ran"


def test_malicious_files_through_the_command_line_run_nothing(tmp_path, env, good_run, shared_data):
    marker = tmp_path / "PWNED"
    for f in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / "data" / "mnist").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "mnist" / f).symlink_to(shared_data / "mnist" / f)  # the real ones, but one
    for fname in ("model.safetensors", "checkpoint.safetensors"):
        shutil.copytree(good_run, tmp_path / f"run-{fname}")
        _plant(tmp_path / f"run-{fname}" / fname, "torch.save", marker)
    _plant(tmp_path / "evil.npy", "npy-object", marker)
    _plant(tmp_path / "evil.npz", "npz-object", marker)
    _plant(tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz", "pickle", marker)
    _plant(tmp_path / "cfg.json", "pickle", marker)
    commands = {
        "eval": (["eval", "run-model.safetensors", "--k", "2", "--no-progress"], "model.safetensors is corrupt"),
        "resume": (["train", "--resume", "run-checkpoint.safetensors", "--epochs", "2"], "is corrupt"),
        "--data": (["eval", good_run, "--data", "evil.npy", "--k", "2"], "aevb never loads pickles"),
        "--dataset": (["train", "--dataset", "evil.npz", "--out", "o1"], "aevb never loads pickles"),
        "builtin": (["train", "--dataset", "mnist", "--data-dir", "data", "--out", "o2"], "train-images-idx3-ubyte"),
        "--config": (["train", "--config", "cfg.json"], "not a readable JSON file"),
    }
    with ThreadPoolExecutor(2) as pool:
        results = {k: pool.submit(aevb_cmd, tmp_path, env, *argv) for k, (argv, _) in commands.items()}
    for name, (_, message) in commands.items():
        one_line_error(results[name].result(), message)
    assert not marker.exists(), "code in a file ran"


# --- 5. run names cannot leave the folder the user chose -----------------------------------------


@pytest.mark.parametrize(
    "name, message",
    [
        ("../escaped", "must be a plain name"),
        ("/tmp/absolute-run", "must be a plain name"),
        ("a/b", "must be a plain name"),
        ("..", "is not a valid name"),
        ("link", "leads outside"),
    ],
)
def test_a_run_name_from_a_config_file_cannot_escape_the_runs_folder(tmp_path, env, name, message):
    runs, outside = tmp_path / "work" / "runs", tmp_path / "outside"
    runs.mkdir(parents=True)
    outside.mkdir()
    (runs / "link").symlink_to(outside, target_is_directory=True)
    cfg = tmp_path / "work" / "cfg.json"
    cfg.write_text(json.dumps({"name": name, "model": {"hidden": [16]}, "train": {"epochs": 1}}))
    r = aevb_cmd(tmp_path / "work", env, "train", "--config", "cfg.json", "--no-progress")
    one_line_error(r, message)
    assert sorted(p.name for p in runs.iterdir()) == ["link"] and not any(outside.iterdir())
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/absolute-run").exists()


def test_a_config_file_names_and_configures_the_run(tmp_path, env):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"name": "mine", "model": {"hidden": [16], "latent_dim": 3}, "train": {"epochs": 1}}))
    r = aevb_cmd(tmp_path, env, "train", "--config", cfg, "--seed", "4", "--no-progress")
    assert r.returncode == 0, r.stderr
    stored = json.loads((tmp_path / "runs" / "mine" / "config.json").read_text())
    assert stored["model"]["hidden"] == [16] and stored["model"]["latent_dim"] == 3
    assert stored["train"]["epochs"] == 1 and stored["train"]["seed"] == 4  # the flag overrides the file
    for bad, message in (
        ({"model": {"latent_dim": "3"}}, "model.latent_dim must be a int"),
        ({"train": {"nope": 1}}, "unknown train field 'nope'"),
        ([1, 2], "must hold a JSON object"),
    ):
        cfg.write_text(json.dumps(bad))
        one_line_error(aevb_cmd(tmp_path, env, "train", "--config", cfg, "--no-progress"), message)
