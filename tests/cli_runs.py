"""The runs the command-line tests share: one small digits run and one small table run, trained once
per test session by `python -m aevb train` (two processes at once), and what they are checked against.

conftest.py makes the fixtures below available to every test file as `cli_env`, `cli_runs`,
`cli_model` and `cli_x_test`.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import aevb
from aevb.preprocess import run_data
from aevb_process import aevb_all, ok, subprocess_env

EPOCHS = 15
DIGITS_FLAGS = ["--epochs", str(EPOCHS), "--hidden", "64", "--latent-dim", "2", "--seed", "0", "--no-progress"]
TABLE_ROWS, TABLE_COLS = 400, 5
TABLE_TEST_ROWS = 40  # max(1, round(0.1 * 400)): the documented user-file split
DIGITS_TEST_ROWS, DIGITS_DIM = 300, 64


@pytest.fixture(scope="session")
def cli_env(shared_data: Path) -> dict:
    """The environment of every command: one thread, this checkout's src, the real datasets."""
    return subprocess_env(AEVB_DATA_DIR=str(shared_data))


def write_table(path: Path, rows: int, cols: int, seed: int) -> np.ndarray:
    """A csv with a header of rows from a linear-Gaussian model (2-D latent), values unbounded."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 2)) @ rng.normal(size=(2, cols)) + 0.3 * rng.normal(size=(rows, cols)) + 2.0
    np.savetxt(path, x, delimiter=",", header=",".join(f"c{i}" for i in range(cols)), comments="")
    return x


@pytest.fixture(scope="session")
def cli_runs(tmp_path_factory, cli_env) -> SimpleNamespace:
    """A digits run (bernoulli, dynamic binarisation) and a table run (gaussian), trained at once."""
    root = tmp_path_factory.mktemp("runs")
    write_table(root / "table.csv", TABLE_ROWS, TABLE_COLS, seed=0)
    res = aevb_all(
        root,
        cli_env,
        {
            "digits": ["train", *DIGITS_FLAGS, "--out", "digits"],
            "table": [
                "train",
                "--dataset",
                "table.csv",
                "--likelihood",
                "gaussian",
                "--hidden",
                "16",
                "--epochs",
                "5",
                "--batch-size",
                "50",
                "--seed",
                "1",
                "--out",
                "table",
                "--no-progress",
            ],
        },
    )
    for r in res.values():
        ok(r)
    return SimpleNamespace(
        root=root, digits=root / "digits", table=root / "table", train=res["digits"], train_table=res["table"]
    )


@pytest.fixture(scope="session")
def cli_model(cli_runs) -> aevb.VAE:
    return aevb.load(cli_runs.digits)


@pytest.fixture(scope="session")
def cli_x_test(cli_model, shared_data) -> torch.Tensor:
    """The digits test split exactly as the run is evaluated on it (binarised once, fixed seed)."""
    return run_data(cli_model.config, "dynamic", "digits", "test", None, str(shared_data))[0]
