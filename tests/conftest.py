"""Shared fixtures: where the real datasets are, and the built-in digits dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import aevb


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
