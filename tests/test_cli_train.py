"""`aevb train` end to end in a subprocess: the run it writes, --help stating every default, --resume,
and Ctrl-C. The digits run is the session's shared one (cli_runs.py)."""

import dataclasses
import json
import math
import re
import shutil
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

import aevb
from aevb_process import (
    aevb_main,
    ok,
    png_size,
    temp_files,
)
from cli_runs import (
    EPOCHS,
)

pytestmark = pytest.mark.slow  # subprocesses and training: left out of the quick subset

# the session's shared runs (cli_runs.py), under this file's names


@pytest.fixture(scope="module")
def env(cli_env) -> dict:
    return cli_env


@pytest.fixture(scope="module")
def runs(cli_runs) -> SimpleNamespace:
    return cli_runs


def test_train_writes_a_complete_run(runs):
    run = runs.digits
    out = ok(runs.train)
    assert out.splitlines()[-1] == "run saved in digits"
    assert [int(line.split()[1]) for line in out.splitlines() if line.startswith("epoch")] == list(range(1, EPOCHS + 1))

    cfg = json.loads((run / "config.json").read_text())
    defaults = {**dataclasses.asdict(aevb.ModelConfig()), **dataclasses.asdict(aevb.TrainConfig())}
    defaults = {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}  # as JSON has them
    assert cfg["version"] == 1
    assert cfg["model"] == {
        **{k: defaults[k] for k in cfg["model"]},
        "data_shape": [8, 8],
        "hidden": [64],
        "latent_dim": 2,
    }
    assert cfg["train"] == {
        **{k: defaults[k] for k in cfg["train"]},
        "epochs": EPOCHS,
        "seed": 0,
        "dataset": "digits",
        "binarize": "dynamic",
    }
    assert set(cfg["model"]) | set(cfg["train"]) == set(defaults)

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, EPOCHS + 1))
    for r in records:
        assert math.isfinite(r["valid_elbo"]) and math.isfinite(r["train_elbo"])
        assert r["valid_elbo"] == pytest.approx(r["valid_log_px_z"] - r["valid_kl"], abs=1e-4)
        assert r["valid_kl"] >= 0
        assert r["examples"] == 1297 * r["epoch"] and r["step"] == 13 * r["epoch"]  # ceil(1297 / 100) steps
    assert records[-1]["valid_elbo"] > records[0]["valid_elbo"] + 3  # observed: about -41 -> -27.4 nats
    assert -35 < records[-1]["valid_elbo"] < -20

    weights = load_file(str(run / "model.safetensors"))
    assert weights.keys() == aevb.VAE(aevb.ModelConfig(hidden=(64,))).state_dict().keys()
    assert any(k.startswith("optim.") for k in load_file(str(run / "checkpoint.safetensors")))
    for png in ("samples.png", "curves.png"):
        h, w = png_size(run / png)
        assert h > 50 and w > 50
    assert temp_files(runs.root) == []


def test_train_help_states_every_field_and_its_default(env, tmp_path):
    r = aevb_main(tmp_path, ["train", "--help"])
    text = ok(r)
    # One chunk per option: from its line "  --flag ..." up to the next option's line.
    chunks = {}
    for chunk in re.split(r"\n(?=\s{2}-)", text):
        m = re.match(r"\s+(--[\w-]+)", chunk)
        if m:
            chunks[m.group(1)] = " ".join(chunk.split())
    assert "(default: 100)" in chunks["--epochs"]
    assert "(default: 2)" in chunks["--latent-dim"]
    assert "(default: 200)" in chunks["--hidden"]
    assert "(default: 5000)" in chunks["--eval-k"]
    fields = [f for c in (aevb.ModelConfig, aevb.TrainConfig) for f in dataclasses.fields(c) if f.name != "data_shape"]
    assert len(fields) == 60  # every field of both configs (data_shape comes from the data)
    for f in fields:
        flag = "--" + f.name.replace("_", "-")
        shown = " ".join(map(str, f.default)) if isinstance(f.default, tuple) else str(f.default)
        shown = {"False": "off", "True": "on"}.get(shown, shown) if isinstance(f.default, bool) else shown
        shown = shown or "none"  # an empty text or tuple is shown as none
        assert flag in chunks, f"no flag for {f.name}"
        assert f"(default: {shown})" in chunks[flag], chunks[flag]
    assert "--data-shape" not in chunks


def test_resume_continues_where_the_run_stopped(runs, env, tmp_path):
    shutil.copytree(runs.digits, tmp_path / "resumed")
    before = (runs.digits / "metrics.jsonl").read_text().splitlines()
    out = ok(aevb_main(tmp_path, ["train", "--resume", "resumed", "--epochs", EPOCHS + 2, "--no-progress"]))
    assert [line.split()[1] for line in out.splitlines() if line.startswith("epoch")] == ["16", "17"]
    assert out.splitlines()[-1] == "run saved in resumed"
    after = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert after[:EPOCHS] == before  # the old records are kept as they were
    records = [json.loads(line) for line in after]
    assert [r["epoch"] for r in records] == list(range(1, EPOCHS + 3))
    for r in records[EPOCHS:]:  # the counters go on from the checkpoint
        assert r["examples"] == 1297 * r["epoch"] and r["step"] == 13 * r["epoch"]
        assert math.isfinite(r["valid_elbo"]) and r["valid_elbo"] > records[0]["valid_elbo"]
    cfg = json.loads((tmp_path / "resumed" / "config.json").read_text())
    original = json.loads((runs.digits / "config.json").read_text())
    assert cfg == {**original, "train": {**original["train"], "epochs": EPOCHS + 2}}
    w0 = load_file(str(runs.digits / "model.safetensors"))
    w1 = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert w1.keys() == w0.keys() and not all(torch.equal(w0[k], w1[k]) for k in w0)  # trained on
    assert temp_files(tmp_path) == []


STOPS = [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]


@pytest.mark.parametrize("sig, status, why", STOPS, ids=["ctrl-c", "term"])
def test_ctrl_c_or_sigterm_keeps_the_run_and_says_how_to_resume(env, tmp_path, sig, status, why):
    """Ctrl-C, and SIGTERM (kill, a batch scheduler's stop), end training with one line, the run resumable."""
    argv = [sys.executable, "-m", "aevb", "train", "--out", "r", "--epochs", "100000", "--no-progress"]
    env = {**env, "PYTHONFAULTHANDLER": "1"}  # a hang below dumps the child's stack on SIGABRT
    # A shell that starts a job with `&` (a CI runner, say) ignores SIGINT, and children inherit
    # that; Python then installs no KeyboardInterrupt handler. Give the child the default, as a terminal would.
    p = subprocess.Popen(
        argv,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        for line in p.stdout:  # wait until an epoch has been checkpointed
            if line.startswith("epoch    2"):
                break
        p.send_signal(sig)
        try:
            _, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGABRT)
            _, err = p.communicate(timeout=30)
            pytest.fail(f"aevb train did not stop within 120 s of {sig.name}; its stack:\n{err[-4000:]}")
    finally:
        p.kill()
    assert p.returncode == status, err[-3000:]
    assert err.strip().splitlines()[-1] == (
        f"aevb: {why}; r keeps its last checkpoint: `aevb train --resume r` continues it"
    )
    done = [json.loads(line)["epoch"] for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert done[:2] == [1, 2] and done == list(range(1, len(done) + 1))
    r = aevb_main(tmp_path, ["train", "--resume", "r", "--epochs", str(done[-1] + 1), "--no-progress"])
    lines = ok(r).splitlines()
    assert lines[0].startswith("resuming r from r/checkpoint.safetensors (step ")  # what --resume continues
    assert lines[1].startswith(f"epoch {done[-1] + 1:4d}")


@pytest.mark.slow
def test_a_closed_pipe_stops_training_quietly_and_resumably(env, tmp_path):
    """`aevb train | head -1`: the reader leaves; the trainer stops with one line (no traceback), exit
    status 141 as for SIGPIPE, and the run keeps a checkpoint that --resume continues."""
    argv = [sys.executable, "-m", "aevb", "train", "--out", "r", "--epochs", "100000", "--no-progress"]
    p = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith("epoch    1")
        p.stdout.close()  # as `head -1` does after its line
        err = p.stderr.read()
        p.wait(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 141, err
    assert err.strip().splitlines() == [
        "aevb: output closed by its reader; r keeps its last checkpoint: `aevb train --resume r` continues it"
    ]
    done = [json.loads(line)["epoch"] for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    r = aevb_main(tmp_path, ["train", "--resume", "r", "--epochs", str(done[-1] + 1), "--no-progress"])
    assert ok(r).splitlines()[1].startswith(f"epoch {done[-1] + 1:4d}")
