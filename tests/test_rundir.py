"""`aevb.rundir`: the run directory around the loop: a torn metrics file on resume, and no overwriting."""

import json

import pytest

import aevb
from aevb.rundir import read_metrics

SMALL = aevb.ModelConfig(hidden=(32,), latent_dim=2)


def test_resume_after_a_crash_between_metrics_and_checkpoint(tmp_path, digits):
    # a record written for an epoch whose checkpoint never landed is dropped and trained again
    aevb.train(SMALL, aevb.TrainConfig(epochs=2), tmp_path / "r", dataset=digits)
    with open(tmp_path / "r" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 3, "valid_elbo": 0.0}) + "\n" + '{"epoch": 4, "val')  # torn line
    aevb.train(None, aevb.TrainConfig(epochs=3), tmp_path / "r", dataset=digits, resume=True)
    records = read_metrics(tmp_path / "r")
    assert [r["epoch"] for r in records] == [1, 2, 3] and records[-1]["valid_elbo"] < -1


def test_refuses_to_overwrite_a_run(tmp_path, digits):
    aevb.train(SMALL, aevb.TrainConfig(epochs=1), tmp_path / "r", dataset=digits)
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    with pytest.raises(aevb.AevbError, match="already holds a run"):
        aevb.train(SMALL, aevb.TrainConfig(epochs=1), tmp_path / "r", dataset=digits)
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before
