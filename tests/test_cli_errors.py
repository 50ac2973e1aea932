"""Bad input to every command: one `aevb: error:` line on stderr, a non-zero exit, nothing left behind,
the run it refused to touch unchanged, and no pickle ever unpickled."""

import json
import pickle
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

import aevb
from aevb.checkpoint import save_config, save_model
from aevb_process import (
    aevb_main,
    temp_files,
)
from cli_runs import (
    write_table,
)

pytestmark = pytest.mark.slow  # subprocesses and training: left out of the quick subset

# the session's shared runs (cli_runs.py), under this file's names


@pytest.fixture(scope="module")
def env(cli_env) -> dict:
    return cli_env


@pytest.fixture(scope="module")
def runs(cli_runs) -> SimpleNamespace:
    return cli_runs


class Marker:
    """Unpickling this creates the file `path`: proof that a pickle was executed."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _pickle_model(case: Path) -> None:
    (case / "run" / "model.safetensors").write_bytes(pickle.dumps(Marker(str(case / "pwned"))))


def _bump_version(case: Path) -> None:
    cfg = json.loads((case / "run" / "config.json").read_text())
    (case / "run" / "config.json").write_text(json.dumps({**cfg, "version": 99}))


def _latent3_run(case: Path) -> None:
    cfg = aevb.ModelConfig(data_shape=(8, 8), latent_dim=3, hidden=(8,))
    (case / "lat3").mkdir()
    save_config(case / "lat3", cfg, aevb.TrainConfig())
    save_model(case / "lat3", aevb.VAE(cfg))


SETUP = {  # files each case needs besides copies of the two runs (`run`, `table`)
    "nan": lambda c: (c / "nan.csv").write_text("a,b\n1,2\nnan,3\n4,5\n6,7\n"),
    "outside": lambda c: write_table(c / "gauss.csv", 30, 3, seed=2),
    "split-and-data": lambda c: write_table(c / "gauss.csv", 30, 5, seed=2),
    "empty": lambda c: (c / "empty.csv").write_text(""),
    "features": lambda c: write_table(c / "three.csv", 10, 3, seed=3),
    "corrupt": lambda c: _truncate(c / "run" / "model.safetensors"),
    "pickle": _pickle_model,
    "version": _bump_version,
    "no-config": lambda c: (c / "notarun").mkdir(),
    "not-empty": lambda c: ((c / "full").mkdir(), (c / "full" / "notes.txt").write_text("mine\n")),
    "latent": _latent3_run,
    "plot-latent": _latent3_run,
}

# name: (argv, words the one-line message must contain, exit code, paths that must not exist after)
BAD = {
    "missing": (
        ["eval", "run", "--data", "missing.csv"],
        ["missing.csv", "no such file"],
        1,
        ["run/eval_file_missing.json"],
    ),
    "unknown": (
        ["train", "--dataset", "nosuch", "--out", "new"],
        ["unknown dataset", "'nosuch'", "digits"],
        1,
        ["new"],
    ),
    "features": (
        ["eval", "table", "--data", "three.csv"],
        ["three.csv has 3 features per row; the model was trained on 5"],
        1,
        ["table/eval_file_three.json"],
    ),
    "nan": (
        ["train", "--dataset", "nan.csv", "--likelihood", "gaussian", "--out", "new"],
        ["nan.csv", "NaN or inf"],
        1,
        ["new"],
    ),
    "outside": (
        ["train", "--dataset", "gauss.csv", "--out", "new"],
        ["outside [0, 1]", "--likelihood gaussian"],
        1,
        ["new"],
    ),
    "empty": (["train", "--dataset", "empty.csv", "--out", "new"], ["empty.csv", "empty"], 1, ["new"]),
    "corrupt": (["sample", "run", "--out", "s.npy"], ["model.safetensors", "corrupt or truncated"], 1, ["s.npy"]),
    "pickle": (
        ["sample", "run", "--out", "s.npy"],
        ["model.safetensors", "corrupt or truncated"],
        1,
        ["s.npy", "pwned"],
    ),
    "version": (["sample", "run", "--out", "s.npy"], ["version 99", "not supported"], 1, ["s.npy"]),
    "no-config": (["reconstruct", "notarun", "--out", "r.npy"], ["notarun", "no config.json"], 1, ["r.npy"]),
    "holds-run": (
        ["train", "--out", "run", "--epochs", "1", "--no-progress"],
        ["already holds a run", "--resume"],
        1,
        [],
    ),
    "not-empty": (
        ["train", "--out", "full", "--epochs", "1", "--no-progress"],
        ["full", "not an empty directory"],
        1,
        ["full/config.json"],
    ),
    "no-folder": (["sample", "run", "--out", "nodir/s.npy"], ["nodir", "does not exist"], 1, ["nodir"]),
    "latent": (["manifold", "lat3", "--out", "m.png"], ["top latent of 3", "2-D"], 1, ["m.png", "lat3/manifold.png"]),
    "resume-change": (["train", "--resume", "run", "--latent-dim", "3"], ["cannot change latent_dim"], 1, []),
    "bad-choice": (
        ["train", "--likelihood", "laplace", "--out", "new"],
        ["--likelihood", "invalid choice", "laplace"],
        2,
        ["new"],
    ),
    "bad-number": (["sample", "run", "--n", "0", "--out", "s.npy"], ["--n", "must be >= 1"], 2, ["s.npy"]),
    "plot-folder": (
        ["encode", "run", "--out", "e.npz", "--plot", "nodir/p.png"],
        ["cannot write nodir/p.png", "does not exist"],
        1,
        ["e.npz", "nodir"],
    ),
    "plot-latent": (
        ["encode", "lat3", "--out", "e.npz", "--plot", "p.png"],
        ["--plot needs a 2-D (top) latent; this model has 3"],
        1,
        ["e.npz", "p.png"],
    ),
    "plot-suffix": (
        ["plot", "run", "--out", "c.csv"],
        ["--out c.csv", "writes .png files", "ending in .png"],
        1,
        ["c.csv"],
    ),
    "report-suffix": (["report", "run", "--out", "r.txt"], ["--out r.txt", "writes .html files"], 1, ["r.txt"]),
    "split-and-data": (
        ["eval", "table", "--split", "valid", "--data", "gauss.csv"],
        ["--split valid and --data gauss.csv: give one"],
        1,
        ["table/eval_file_gauss.json", "table/eval_valid.json"],
    ),
    "dist-timeout": (
        ["train", "--dist-timeout", "-1", "--out", "new"],
        ["--dist-timeout", "-1 must be in (0, inf)"],
        2,
        ["new"],
    ),
    "infinite-lr": (["train", "--lr", "inf", "--out", "new"], ["lr must be a finite number, got inf"], 1, ["new"]),
    "negative-n": (["reconstruct", "run", "--n", "-3", "--out", "r.png"], ["--n", "must be >= 0"], 2, ["r.png"]),
    "tiny-grid": (["manifold", "run", "--n", "1", "--out", "m.png"], ["--n", "must be >= 2"], 2, ["m.png"]),
}


@pytest.fixture(scope="module")
def bad(runs, env, tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """Each BAD case run in its own folder holding copies of the two runs; in this process (`aevb.cli.main`),
    since exit codes and stderr are the same there and 19 imports of torch cost ~45 s."""
    root = tmp_path_factory.mktemp("bad")
    commands = {}
    for name, (argv, *_) in BAD.items():
        case = root / name
        shutil.copytree(runs.digits, case / "run")
        shutil.copytree(runs.table, case / "table")
        if name in SETUP:
            SETUP[name](case)
        commands[name] = (case, argv)
    return {
        name: (case, aevb_main(case, argv, AEVB_DATA_DIR=env["AEVB_DATA_DIR"]))
        for name, (case, argv) in commands.items()
    }


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_line_and_leaves_nothing(bad, name):
    case, r = bad[name]
    _, words, code, absent = BAD[name]
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("aevb: error: "), r.stderr
    for w in words:
        assert w in lines[0]
    for path in absent:
        assert not (case / path).exists(), path
    assert temp_files(case) == []


def test_a_pickled_model_is_never_unpickled(bad, tmp_path):
    case, _ = bad["pickle"]
    assert not (case / "pwned").exists()
    # the payload is live: unpickling it really would have created the marker
    pickle.loads(pickle.dumps(Marker(str(tmp_path / "control")))).close()
    assert (tmp_path / "control").exists()


def test_refusing_to_overwrite_leaves_the_run_as_it_was(bad, runs):
    for name in ("holds-run", "resume-change"):
        case, _ = bad[name]
        for f in ("config.json", "metrics.jsonl", "model.safetensors", "checkpoint.safetensors"):
            assert (case / "run" / f).read_bytes() == (runs.digits / f).read_bytes(), (name, f)
    case, _ = bad["not-empty"]
    assert [p.name for p in (case / "full").iterdir()] == ["notes.txt"]
