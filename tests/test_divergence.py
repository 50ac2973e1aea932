"""Divergence in `aevb train` (the CLI, in this process): stop with a line naming the step and keep the last good
checkpoint, or (`--nonfinite skip`) skip and count exactly the poisoned batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aevb.data.load import split_rows
from aevb_process import aevb_main, assert_bitwise_equal, metrics, one_line_error, tensors

pytestmark = pytest.mark.slow  # training: left out of the quick subset

# --- divergence: stop naming the step, or skip and count ------------------------------------


def _table_with_poison(path: Path, poison_rows: list[int]) -> None:
    x = np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32)
    x[poison_rows] = 3e38  # (x - mean)^2 overflows float32: the loss of any batch holding one is inf
    np.save(path, x)


def test_divergence_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    _table_with_poison(tmp_path / "t.npy", [])
    flags = ["--dataset", "t.npy", "--likelihood", "gaussian", "--batch-size", "32", "--no-progress"]
    r = aevb_main(tmp_path, ["train", "--out", "r", "--epochs", "1", *flags])
    assert r.returncode == 0, r.stderr
    before = tensors(tmp_path / "r" / "checkpoint.safetensors")
    # the same run, resumed with a data file that now holds a poisoned row
    train_rows = split_rows(400)[0]
    _table_with_poison(tmp_path / "t.npy", [int(train_rows[0])])
    r = aevb_main(tmp_path, ["train", "--resume", "r", "--epochs", "2", "--no-progress"])
    line = one_line_error(r, "training diverged at step ", "(epoch 2, batch ", "the loss is NaN or inf")
    assert "keeps its last good checkpoint (step 10, end of epoch 1)" in line
    step = int(line.split("at step ")[1].split()[0])
    assert 11 <= step <= 20  # epoch 2 has 10 steps of 32 (320 train rows)
    assert_bitwise_equal(before, tensors(tmp_path / "r" / "checkpoint.safetensors"))


def test_nonfinite_skip_counts_exactly_the_poisoned_batches(tmp_path):
    train_rows = split_rows(400)[0]  # the documented split: row i of the file -> train position
    poisoned = [int(train_rows[i]) for i in (3, 50, 51, 200)]
    _table_with_poison(tmp_path / "t.npy", poisoned)
    flags = ["--dataset", "t.npy", "--likelihood", "gaussian", "--batch-size", "32", "--seed", "7"]
    r = aevb_main(tmp_path, ["train", "--out", "r", "--epochs", "1", "--nonfinite", "skip", "--no-progress", *flags])
    assert r.returncode == 0, r.stderr
    # epoch 1's order is the first draw of the training generator
    perm = torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(7))
    bad = {3, 50, 51, 200}
    expected = sum(1 for i in range(0, len(perm), 32) if bad & set(perm[i : i + 32].tolist()))
    (record,) = metrics(tmp_path / "r")
    assert record["epoch_skipped_steps"] == record["skipped_steps"] == expected >= 2
    assert all(torch.isfinite(t).all() for t in tensors(tmp_path / "r" / "model.safetensors").values())
