"""Allocation failures (aevb.memory): one `aevb: error:` line naming what was being allocated and how
much, exit 1, and the run directory as it was before (no half-written run, the last checkpoint intact).

The real failures ask for more than any machine has (a 25.6 GB weight under an 8 GiB address-space
limit, or 2^60 bytes), so the allocator refuses at once and nothing is ever touched.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import aevb
import aevb.loop
import aevb.model
from aevb.cli import main
from aevb.memory import failed_allocation, size

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "16", "--seed", "3", "--no-progress"]
HUGE = 1 << 60  # bytes: more than a 64-bit address space holds


def _limit_address_space() -> None:  # in the child: a real allocation of tens of GB cannot succeed
    limit = 8 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _allocate_too_much(*args, **kwargs):
    torch.empty(HUGE, dtype=torch.uint8)  # raises the allocator's own RuntimeError
    raise AssertionError("allocated 2^60 bytes")


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aevb: error: "), err
    return lines[0]


@pytest.mark.slow  # a subprocess under an address-space limit: over 3 s
def test_a_model_too_large_to_build_is_one_line_and_leaves_no_run(tmp_path):
    h = 100_000_000
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run(
        [sys.executable, "-m", "aevb", "train", "--hidden", str(h), "--epochs", "1", "--out", "R"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_address_space,
    )
    assert r.returncode == 1, r.stderr
    # 64-H-(2+2) encoder, 2-H-64 decoder: 64H + H + 4H + 4 + 2H + H + 64H + 64 parameters;
    # the first to be allocated is the encoder's (H, 64) float32 weight
    params, first = 136 * h + 68, 64 * h * 4
    assert one_error_line(r.stderr) == (
        f"aevb: error: out of memory while building the model ({params:,} parameters, {size(4 * params)} of "
        f"float32 weights): could not allocate {size(first)} ({first} bytes); "
        "choose a smaller --hidden, --latent-dim or --channels"
    )
    assert (size(first), size(4 * params)) == ("23.8 GiB", "50.7 GiB")
    assert not (tmp_path / "R").exists()  # no half-written run: not even its folder


def test_a_failure_mid_training_keeps_the_last_checkpoint_and_resumes_bitwise(tmp_path, monkeypatch, capsys):
    whole = aevb.train(aevb.ModelConfig(hidden=(16,)), aevb.TrainConfig(epochs=2, seed=3), tmp_path / "whole")
    run, real_loss, calls, at_epoch_1 = tmp_path / "R", aevb.loop._loss, [0], {}

    def loss(*args, **kwargs):  # digits: 13 steps of 100 per epoch; step 14 is epoch 2's first
        calls[0] += 1
        if calls[0] == 14:
            at_epoch_1.update({p.name: p.read_bytes() for p in run.iterdir() if p.suffix != ".lock"})
        if calls[0] == 20:
            _allocate_too_much()
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(aevb.loop, "_loss", loss)
    capsys.readouterr()
    assert main(["train", "--epochs", "2", *TINY, "--out", str(run)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line == (
        f"aevb: error: out of memory while training epoch 2 (batches of 100 on cpu): could not allocate "
        f"{size(HUGE)} ({HUGE} bytes); {run} keeps its last checkpoint (step 13, end of epoch 1); "
        "choose a smaller --batch-size or --hidden (a new run)"
    )
    assert {"checkpoint.safetensors", "model.safetensors", "config.json"} <= set(at_epoch_1)
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.suffix != ".lock"}
    assert after == at_epoch_1  # byte for byte; no temporary file left beside them
    monkeypatch.undo()
    resumed = aevb.train(None, None, run, resume=True).state_dict()  # the same arithmetic as the command
    assert whole.state_dict().keys() == resumed.keys()
    assert all(torch.equal(v, resumed[k]) for k, v in whole.state_dict().items())


def test_an_allocation_failure_in_any_command_is_one_line(tmp_path, monkeypatch, capsys):
    run = tmp_path / "R"
    assert main(["train", "--epochs", "1", *TINY, "--out", str(run)]) == 0
    monkeypatch.setattr(aevb.model.VAE, "sample", _allocate_too_much)
    capsys.readouterr()
    assert main(["sample", str(run), "--out", str(tmp_path / "s.png")]) == 1
    assert one_error_line(capsys.readouterr().err) == (
        f"aevb: error: out of memory while running aevb sample: could not allocate {size(HUGE)} ({HUGE} bytes)"
    )
    assert not (tmp_path / "s.png").exists()


def test_failed_allocation_reads_the_amount_from_each_allocator():
    with pytest.raises(RuntimeError) as cpu:
        torch.empty(1 << 48, dtype=torch.uint8)
    assert failed_allocation(cpu.value) == f"256.0 TiB ({1 << 48} bytes)"
    with pytest.raises(MemoryError) as numpy_error:
        np.empty(1 << 48, dtype=np.uint8)
    assert failed_allocation(numpy_error.value) == "256. TiB"  # numpy's own rendering
    cuda = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity")
    assert failed_allocation(cuda) == "2.00 GiB"
    assert failed_allocation(MemoryError()) == "an unknown amount"
    assert failed_allocation(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
    assert failed_allocation(ValueError("out of memory")) is None  # not an allocator's exception type
    assert [size(n) for n in (512, 1536, 3 << 20)] == ["512 B", "1.5 KiB", "3.0 MiB"]
