"""The `aevb` command end to end: every subcommand in a subprocess, checked against ground truth.

One small digits run and one small table run are trained once per module and shared. Commands
that do not depend on each other run concurrently (they are separate processes, most of their
time is importing torch), which keeps the whole file under a minute on two cores.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import aevb
from aevb.checkpoint import save_config, save_model
from aevb.preprocess import run_data

EPOCHS = 15
DIGITS_FLAGS = ["--epochs", str(EPOCHS), "--hidden", "64", "--latent-dim", "2", "--seed", "0", "--no-progress"]
TABLE_ROWS, TABLE_COLS = 400, 5
TABLE_TEST_ROWS = 40  # max(1, round(0.1 * 400)): the documented user-file split
DIGITS_TEST_ROWS, DIGITS_DIM = 300, 64
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WORKERS = max(2, min(8, os.cpu_count() or 2))


# --- helpers ----------------------------------------------------------------------------------


def aevb_cmd(cwd: Path, env: dict, *args) -> subprocess.CompletedProcess:
    """`python -m aevb ARGS` in cwd; stdout and stderr captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "aevb", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def aevb_all(cwd: Path, env: dict, commands: dict[str, list]) -> dict[str, subprocess.CompletedProcess]:
    """Run independent commands concurrently; results by name. Each entry: argv, or (cwd, argv)."""
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {}
        for name, cmd in commands.items():
            where, argv = cmd if isinstance(cmd, tuple) else (cwd, cmd)
            futures[name] = pool.submit(aevb_cmd, where, env, *argv)
    return {name: f.result() for name, f in futures.items()}


def ok(r: subprocess.CompletedProcess) -> str:
    """stdout of a command that must succeed silently on stderr (no warnings, no progress bars)."""
    assert r.returncode == 0, f"exit {r.returncode}; stderr:\n{r.stderr}"
    assert r.stderr == "", r.stderr
    return r.stdout


def png_size(path: Path) -> tuple[int, int]:
    """(height, width) in pixels of a real PNG file."""
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC, f"{path} is not a PNG"
    h, w = matplotlib.image.imread(path).shape[:2]
    return h, w


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.tmp"))


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    header, *rows = path.read_text().splitlines()
    return header.split(","), np.array([[float(v) for v in row.split(",")] for row in rows])


def digits_test_labels() -> np.ndarray:
    """The labels of the documented digits test split: rows reordered by default_rng(0), last 300."""
    from sklearn.datasets import load_digits

    target = load_digits().target
    return target[np.random.default_rng(0).permutation(len(target))][1497:]


# --- the shared runs --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(shared_data: Path) -> dict:
    # One thread per process: these networks are tiny, and on a busy 2-core machine torch's
    # worker threads made each epoch ~100x slower than one thread.
    src = str(Path(__file__).resolve().parents[1] / "src")  # this checkout, whatever is installed
    pythonpath = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "AEVB_DATA_DIR": str(shared_data), "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath}


def write_table(path: Path, rows: int, cols: int, seed: int) -> np.ndarray:
    """A csv with a header of rows from a linear-Gaussian model (2-D latent), values unbounded."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 2)) @ rng.normal(size=(2, cols)) + 0.3 * rng.normal(size=(rows, cols)) + 2.0
    np.savetxt(path, x, delimiter=",", header=",".join(f"c{i}" for i in range(cols)), comments="")
    return x


@pytest.fixture(scope="module")
def runs(tmp_path_factory, env) -> SimpleNamespace:
    """A digits run (bernoulli, dynamic binarisation) and a table run (gaussian), trained at once."""
    root = tmp_path_factory.mktemp("runs")
    write_table(root / "table.csv", TABLE_ROWS, TABLE_COLS, seed=0)
    res = aevb_all(
        root,
        env,
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


@pytest.fixture(scope="module")
def model(runs) -> aevb.VAE:
    return aevb.load(runs.digits)


@pytest.fixture(scope="module")
def x_test(model, shared_data) -> torch.Tensor:
    """The digits test split exactly as the run is evaluated on it (binarised once, fixed seed)."""
    return run_data(model.config, "dynamic", "digits", "test", None, str(shared_data))[0]


@pytest.fixture(scope="module")
def outs(runs, env, tmp_path_factory, x_test) -> SimpleNamespace:
    """Every command that reads the shared runs without changing them, run once, concurrently."""
    cwd = tmp_path_factory.mktemp("outs")
    np.save(cwd / "test_u8.npy", (x_test.numpy() * 255).astype(np.uint8))  # the test split as 8-bit images
    for name in ("eval-again", "plot"):  # copies for commands that write into their run
        shutil.copytree(runs.digits, cwd / name)
    (cwd / "plot" / "curves.png").unlink()
    (cwd / "eval-again" / "eval_test.json").unlink(missing_ok=True)
    d, t = runs.digits, runs.table
    res = aevb_all(
        cwd,
        env,
        {
            "eval": ["eval", d, "--k", "200", "--no-progress"],
            "eval_again": ["eval", cwd / "eval-again", "--k", "200", "--no-progress"],
            "sample_npy": ["sample", d, "--n", "16", "--out", "s.npy"],
            "sample_png": ["sample", d, "--n", "16", "--out", "s.png"],
            "sample_draw": ["sample", d, "--n", "16", "--draw", "--out", "draw.npy"],
            "reconstruct_npy": ["reconstruct", d, "--n", "10", "--out", "r.npy"],
            "reconstruct_png": ["reconstruct", d, "--out", "r.png"],
            "reconstruct_train": ["reconstruct", d, "--split", "train", "--n", "10", "--out", "rt.npy"],
            "encode_npz": ["encode", d, "--out", "e.npz", "--plot", "e.png"],
            "encode_csv": ["encode", d, "--out", "e.csv"],
            "encode_npy": ["encode", d, "--out", "e.npy"],
            "encode_u8": ["encode", d, "--data", "test_u8.npy", "--out", "e_u8.npz"],
            "manifold": ["manifold", d, "--n", "6", "--out", "m.png"],
            "plot": ["plot", cwd / "plot"],
            "table_eval": ["eval", t, "--k", "50", "--no-progress"],
            "table_sample": ["sample", t, "--n", "10", "--out", "t.csv"],
        },
    )
    return SimpleNamespace(cwd=cwd, **res)


# --- train ------------------------------------------------------------------------------------


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
    r = aevb_cmd(tmp_path, env, "train", "--help")
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
    assert len(fields) == 57  # every field of both configs (data_shape comes from the data)
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
    out = ok(aevb_cmd(tmp_path, env, "train", "--resume", "resumed", "--epochs", EPOCHS + 2, "--no-progress"))
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


# --- eval -------------------------------------------------------------------------------------


def _printed(stdout: str, label: str) -> float:
    return float(re.search(rf"{re.escape(label)}\s+(-?\d+\.\d+)", stdout).group(1))


def test_eval_prints_and_stores_the_same_numbers(runs, outs):
    out = ok(outs.eval)
    res = json.loads((runs.digits / "eval_test.json").read_text())
    assert res["examples"] == DIGITS_TEST_ROWS and res["k"] == 200 and res["seed"] == 0
    assert (res["data"], res["binarize"], res["likelihood"]) == ("digits test", "dynamic", "bernoulli")
    assert out.splitlines()[0] == "digits test: 300 examples, bernoulli likelihood, binarisation dynamic"
    assert abs(_printed(out, "ELBO") - res["elbo"]) <= 5e-4
    assert abs(_printed(out, "log p(x)") - res["log_likelihood"]) <= 5e-4
    assert abs(_printed(out, "bits/dim") - res["bits_per_dim"]) <= 5e-5
    assert "k=200" in out
    assert res["elbo"] == pytest.approx(res["log_px_z"] - res["kl"], abs=1e-6)
    assert res["bits_per_dim"] == pytest.approx(-res["log_likelihood"] / (DIGITS_DIM * math.log(2)), rel=1e-6)
    # importance sampling gives a tighter bound than the ELBO on average
    assert res["log_likelihood"] >= res["elbo"] - 3 * res["elbo_se"]
    assert -35 < res["log_likelihood"] < -20


def test_eval_equals_the_library_and_is_deterministic(runs, outs, model, x_test):
    res = json.loads((runs.digits / "eval_test.json").read_text())
    assert x_test.shape == (DIGITS_TEST_ROWS, 8, 8) and set(x_test.unique().tolist()) == {0.0, 1.0}
    ll = aevb.log_likelihood(model, x_test, k=200, seed=0).double().mean().item()
    assert res["log_likelihood"] == pytest.approx(ll, abs=1e-4)
    assert res["elbo"] == pytest.approx(aevb.elbo_terms(model, x_test, seed=0).elbo.double().mean().item(), abs=1e-4)
    ok(outs.eval_again)
    again = json.loads((outs.cwd / "eval-again" / "eval_test.json").read_text())
    assert again == res


def test_eval_of_a_user_file_run(runs, outs):
    assert ok(runs.train_table).splitlines()[-1] == "run saved in table"
    first = ok(outs.table_eval).splitlines()[0]
    assert first == f"{runs.root / 'table.csv'} test: 40 examples, gaussian likelihood, binarisation none"
    cfg = json.loads((runs.table / "config.json").read_text())
    assert cfg["train"]["dataset"] == str(runs.root / "table.csv")  # absolute: eval ran from elsewhere
    assert cfg["train"]["binarize"] == "none" and cfg["model"]["data_shape"] == [TABLE_COLS]
    res = json.loads((runs.table / "eval_test.json").read_text())
    assert res["examples"] == TABLE_TEST_ROWS and res["likelihood"] == "gaussian" and res["binarize"] == "none"
    assert math.isfinite(res["elbo"]) and math.isfinite(res["log_likelihood"])
    assert res["log_likelihood"] >= res["elbo"] - 3 * res["elbo_se"]
    assert res["bits_per_dim"] == pytest.approx(-res["log_likelihood"] / (TABLE_COLS * math.log(2)), rel=1e-6)


# --- sample, reconstruct, encode, manifold, plot ----------------------------------------------


def test_sample(outs, model):
    assert ok(outs.sample_npy).strip() == "16 samples written to s.npy"
    s = np.load(outs.cwd / "s.npy")
    assert s.shape == (16, DIGITS_DIM) and s.dtype == np.float32
    assert ((s > 0) & (s < 1)).all()
    expected = model.sample(16, torch.Generator().manual_seed(0)).reshape(16, -1).numpy()
    np.testing.assert_allclose(s, expected, atol=1e-6)

    ok(outs.sample_png)
    h, w = png_size(outs.cwd / "s.png")
    assert h > 50 and w > 50

    ok(outs.sample_draw)
    d = np.load(outs.cwd / "draw.npy")
    assert d.shape == (16, DIGITS_DIM) and set(np.unique(d)) == {0.0, 1.0}
    drawn = model.sample(16, torch.Generator().manual_seed(0), mean=False).reshape(16, -1).numpy()
    assert np.array_equal(d, drawn)


def test_sample_of_a_table_run_is_a_csv(runs, outs):
    ok(outs.table_sample)
    header, rows = read_csv(outs.cwd / "t.csv")
    assert header == [f"x{i}" for i in range(1, TABLE_COLS + 1)]
    assert rows.shape == (10, TABLE_COLS)
    expected = aevb.load(runs.table).sample(10, torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(rows, expected, rtol=1e-6, atol=1e-6)


def test_reconstruct(outs, model, x_test):
    assert ok(outs.reconstruct_npy).strip() == "10 reconstructions of digits test written to r.npy"
    r = np.load(outs.cwd / "r.npy")
    assert r.shape == (10, DIGITS_DIM) and ((r > 0) & (r < 1)).all()
    with torch.no_grad():
        expected = model.decode(model.encode(x_test[:10]).mean).mean.numpy()
    np.testing.assert_allclose(r, expected, atol=1e-5)
    # each input is explained best by its own reconstruction: Bernoulli log p(x_i | r_j), (input, recon)
    x = x_test[:10].reshape(10, -1).numpy()
    ll = (x[:, None] * np.log(r[None]) + (1 - x[:, None]) * np.log1p(-r[None])).sum(-1)
    assert (ll.argmax(axis=1) == np.arange(10)).mean() >= 0.7  # observed 9 of 10
    assert np.diag(ll).mean() > ll[~np.eye(10, dtype=bool)].mean() + 2  # observed -27.0 vs -30.8 nats

    ok(outs.reconstruct_png)
    h, w = png_size(outs.cwd / "r.png")
    assert h > 50 and w > 50


def test_reconstruct_of_the_train_split_sees_a_fixed_binarisation(outs, model, shared_data):
    # under dynamic binarisation the train split is scored on one fixed draw (seed 0), like
    # valid and test, never as grey levels
    ok(outs.reconstruct_train)
    grey = aevb.load_dataset("digits", shared_data).train[:10]
    binary = torch.bernoulli(grey, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.decode(model.encode(binary).mean).mean.numpy()
        from_grey = model.decode(model.encode(grey).mean).mean.numpy()
    r = np.load(outs.cwd / "rt.npy")
    np.testing.assert_allclose(r, expected, atol=1e-5)
    assert np.abs(r - from_grey).max() > 1e-3


def test_encode(outs, model, x_test):
    ok(outs.encode_npz)
    e = np.load(outs.cwd / "e.npz")
    assert sorted(e.files) == ["label", "logvar", "mu"]
    assert e["mu"].shape == (DIGITS_TEST_ROWS, 2) and e["logvar"].shape == (DIGITS_TEST_ROWS, 2)
    assert np.array_equal(e["label"], digits_test_labels())
    with torch.no_grad():
        q = model.encode(x_test)
    np.testing.assert_allclose(e["mu"], q.mean.numpy(), atol=1e-5)
    np.testing.assert_allclose(np.exp(0.5 * e["logvar"]), q.stddev.numpy(), rtol=1e-4)
    png_size(outs.cwd / "e.png")

    # The test split saved as 8-bit images (pixels / 255 when read) is the same input: a second
    # process must give byte-identical codes (encode is deterministic). The file has no labels.
    ok(outs.encode_u8)
    e_u8 = np.load(outs.cwd / "e_u8.npz")
    assert sorted(e_u8.files) == ["logvar", "mu"]
    assert all(e_u8[k].tobytes() == e[k].tobytes() for k in ("mu", "logvar"))

    ok(outs.encode_csv)
    header, table = read_csv(outs.cwd / "e.csv")
    assert header == ["mu1", "mu2", "logvar1", "logvar2", "label"]
    np.testing.assert_allclose(table, np.column_stack([e["mu"], e["logvar"], e["label"]]), rtol=1e-7, atol=1e-7)

    ok(outs.encode_npy)
    a = np.load(outs.cwd / "e.npy")
    assert a.shape == (DIGITS_TEST_ROWS, 4)
    np.testing.assert_array_equal(a, np.hstack([e["mu"], e["logvar"]]).astype(np.float32))


def test_manifold(outs):
    assert ok(outs.manifold).strip() == "6x6 manifold written to m.png"
    h, w = png_size(outs.cwd / "m.png")
    assert h > 50 and w > 50


def test_plot_writes_the_curves_of_the_run(outs):
    assert ok(outs.plot).strip() == f"training curves written to {outs.cwd / 'plot' / 'curves.png'}"
    h, w = png_size(outs.cwd / "plot" / "curves.png")
    assert (h, w) == (400, 600)  # 6 x 4 inches at 100 dpi


def test_no_temp_files_are_left(runs, outs):
    assert temp_files(outs.cwd) == [] and temp_files(runs.root) == []


# --- bad input: one line on stderr, a non-zero exit, nothing left behind -----------------------


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
    "empty": lambda c: (c / "empty.csv").write_text(""),
    "features": lambda c: write_table(c / "three.csv", 10, 3, seed=3),
    "corrupt": lambda c: _truncate(c / "run" / "model.safetensors"),
    "pickle": _pickle_model,
    "version": _bump_version,
    "no-config": lambda c: (c / "notarun").mkdir(),
    "not-empty": lambda c: ((c / "full").mkdir(), (c / "full" / "notes.txt").write_text("mine\n")),
    "latent": _latent3_run,
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
    "negative-n": (["reconstruct", "run", "--n", "-3", "--out", "r.png"], ["--n", "must be >= 0"], 2, ["r.png"]),
    "tiny-grid": (["manifold", "run", "--n", "1", "--out", "m.png"], ["--n", "must be >= 2"], 2, ["m.png"]),
}


@pytest.fixture(scope="module")
def bad(runs, env, tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """Each BAD case run in its own folder holding copies of the two runs; all at once."""
    root = tmp_path_factory.mktemp("bad")
    commands = {}
    for name, (argv, *_) in BAD.items():
        case = root / name
        shutil.copytree(runs.digits, case / "run")
        shutil.copytree(runs.table, case / "table")
        if name in SETUP:
            SETUP[name](case)
        commands[name] = (case, argv)
    return {name: (root / name, r) for name, r in aevb_all(root, env, commands).items()}


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


def test_ctrl_c_keeps_the_run_and_says_how_to_resume(env, tmp_path):
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
        p.send_signal(signal.SIGINT)
        try:
            _, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGABRT)
            _, err = p.communicate(timeout=30)
            pytest.fail(f"aevb train did not stop within 120 s of SIGINT; its stack:\n{err[-4000:]}")
    finally:
        p.kill()
    assert p.returncode == 130
    assert err.strip().splitlines()[-1] == (
        "aevb: interrupted; r keeps its last checkpoint: `aevb train --resume r` continues it"
    )
    done = [json.loads(line)["epoch"] for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert done[:2] == [1, 2] and done == list(range(1, len(done) + 1))
    r = aevb_cmd(tmp_path, env, "train", "--resume", "r", "--epochs", str(done[-1] + 1), "--no-progress")
    lines = ok(r).splitlines()
    assert lines[0].startswith("resuming r from r/checkpoint.safetensors (step ")  # what --resume continues
    assert lines[1].startswith(f"epoch {done[-1] + 1:4d}")
