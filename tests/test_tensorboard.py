"""--tensorboard: the scalars in RUN/tensorboard/ are metrics.jsonl's values, epoch by epoch, and a resumed
run continues them without duplicates; without the package it is a one-line error."""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest

import aevb
from aevb.errors import AevbError

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

_MODEL = aevb.ModelConfig(latent_dim=2, hidden=(16,))


def _scalars(run) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _check(run, epochs):
    records, scalars = _records(run), _scalars(run)
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))
    numeric = [k for k, v in records[0].items() if k != "epoch" and isinstance(v, float) and np.isfinite(v)]
    assert "train_elbo" in numeric or any("elbo" in k for k in numeric)
    for key in numeric:
        assert [step for step, _ in scalars[key]] == list(range(1, epochs + 1)), key  # once per epoch, in order
        want = np.array([r[key] for r in records], dtype=np.float32)
        assert np.array_equal(np.array([v for _, v in scalars[key]], dtype=np.float32), want), key


def test_scalars_equal_metrics_and_resume_appends(tmp_path, digits):
    run = tmp_path / "run"
    aevb.train(_MODEL, aevb.TrainConfig(epochs=3, seed=0, tensorboard=True), run, dataset=digits)
    _check(run, 3)
    aevb.train(None, aevb.TrainConfig(epochs=5), run, resume=True, dataset=digits)
    _check(run, 5)


def test_without_the_package_it_is_one_line(tmp_path, digits, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    run = tmp_path / "run"
    with pytest.raises(AevbError) as e:
        aevb.train(_MODEL, aevb.TrainConfig(epochs=1, tensorboard=True), run, dataset=digits)
    assert "pip install aevb[tensorboard]" in str(e.value) and "\n" not in str(e.value)
    assert not run.exists()  # no half-written run
