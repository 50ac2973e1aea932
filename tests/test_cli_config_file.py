"""`aevb train --config FILE`: the file names and configures the run, flags override it, and a run name
from it cannot leave the folder the user chose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aevb_process import (
    aevb_main,
    one_line_error,
)

pytestmark = pytest.mark.slow  # training: left out of the quick subset
# the commands run in this process (`aevb.cli.main`): a subprocess each spent ~2 s importing torch


# --- run names cannot leave the folder the user chose -----------------------------------------


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
def test_a_run_name_from_a_config_file_cannot_escape_the_runs_folder(tmp_path, name, message):
    runs, outside = tmp_path / "work" / "runs", tmp_path / "outside"
    runs.mkdir(parents=True)
    outside.mkdir()
    (runs / "link").symlink_to(outside, target_is_directory=True)
    cfg = tmp_path / "work" / "cfg.json"
    cfg.write_text(json.dumps({"name": name, "model": {"hidden": [16]}, "train": {"epochs": 1}}))
    r = aevb_main(tmp_path / "work", ["train", "--config", "cfg.json", "--no-progress"])
    one_line_error(r, message)
    assert sorted(p.name for p in runs.iterdir()) == ["link"] and not any(outside.iterdir())
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/absolute-run").exists()


def test_a_config_file_names_and_configures_the_run(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"name": "mine", "model": {"hidden": [16], "latent_dim": 3}, "train": {"epochs": 1}}))
    r = aevb_main(tmp_path, ["train", "--config", cfg, "--seed", "4", "--no-progress"])
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
        one_line_error(aevb_main(tmp_path, ["train", "--config", cfg, "--no-progress"]), message)
