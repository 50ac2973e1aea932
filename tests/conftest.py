"""Shared fixtures: where the real datasets are, the built-in digits dataset, and the runs the CLI tests share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.register_assert_rewrite("aevb_process")  # its checks report values like a test's own asserts

import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import aevb  # noqa: E402
from cli_runs import cli_env, cli_model, cli_runs, cli_x_test  # noqa: E402, F401  (the CLI tests' shared runs)

# One thread per test process, for torch and for numpy's BLAS: the networks are tiny, and `-n auto` already
# runs one process per core; more threads than cores made the detector's fits 5x slower on a 2-core machine.
# The commands the tests run in subprocesses get OMP_NUM_THREADS=1 (tests/aevb_process.py).
torch.set_num_threads(1)
threadpool_limits(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real datasets: `$AEVB_TEST_DATA`, else `<repo>/../shared/data`.

    Missing data skips the test locally but fails it under CI, where it must be present.
    """
    env = os.environ.get("AEVB_TEST_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        message = f"real datasets not found at {path} (set AEVB_TEST_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def digits():
    """The built-in digits dataset (`aevb.load_dataset("digits")`), loaded once for the test session;
    a test module may define its own `digits` fixture instead."""
    return aevb.load_dataset("digits")


@pytest.fixture(scope="session")
def images(digits):
    """300 training and 60 test rows of the 8 x 8 digits in [0, 1], (n, 64) float64: images as scikit-learn passes
    them to the anomaly detector."""
    flat = [getattr(digits, s).reshape(len(getattr(digits, s)), -1).double().numpy() for s in ("train", "test")]
    return flat[0][:300], flat[1][:60]


@pytest.fixture(scope="session")
def digits_elbo_and_iwae_models(digits) -> dict:
    """An ELBO-trained and an IWAE (k=5)-trained 64-64-8 model on digits, 40 epochs each (a few seconds),
    by objective name; shared by the objective-variant and sampling tests."""
    out = {}
    for objective in ("elbo", "iwae"):
        cfg = aevb.TrainConfig(epochs=40, objective=objective, k=5, seed=0)
        out[objective] = aevb.train(aevb.ModelConfig(latent_dim=8, hidden=(64,)), cfg, dataset=digits)
    return out
