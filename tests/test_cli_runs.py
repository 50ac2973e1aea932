"""The commands that read a trained run (`aevb.cli.runs`: eval, sample, reconstruct, encode, manifold,
plot) end to end through `aevb.cli.main`, checked against the library and ground truth.

They read the session's shared digits and table runs (cli_runs.py, trained in subprocesses) and do not
depend on each other, so they run once, in this process (a subprocess each spent ~2 s importing torch).
"""

import json
import math
import re
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import aevb
from aevb_process import (
    aevb_main,
    digits_test_labels,
    ok,
    png_size,
    read_csv,
    temp_files,
)
from cli_runs import (
    DIGITS_DIM,
    DIGITS_TEST_ROWS,
    TABLE_COLS,
    TABLE_TEST_ROWS,
)

pytestmark = pytest.mark.slow  # subprocesses and training: left out of the quick subset

# the session's shared runs (cli_runs.py), under this file's names


@pytest.fixture(scope="module")
def env(cli_env) -> dict:
    return cli_env


@pytest.fixture(scope="module")
def runs(cli_runs) -> SimpleNamespace:
    return cli_runs


@pytest.fixture(scope="module")
def model(cli_model) -> aevb.VAE:
    return cli_model


@pytest.fixture(scope="module")
def x_test(cli_x_test) -> torch.Tensor:
    return cli_x_test


@pytest.fixture(scope="module")
def outs(runs, env, tmp_path_factory, x_test) -> SimpleNamespace:
    """Every command that reads the shared runs without changing them, run once, in this process."""
    cwd = tmp_path_factory.mktemp("outs")
    np.save(cwd / "test_u8.npy", (x_test.numpy() * 255).astype(np.uint8))  # the test split as 8-bit images
    for name in ("eval-again", "plot"):  # copies for commands that write into their run
        shutil.copytree(runs.digits, cwd / name)
    (cwd / "plot" / "curves.png").unlink()
    (cwd / "eval-again" / "eval_test.json").unlink(missing_ok=True)
    d, t = runs.digits, runs.table
    commands = {
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
    }
    res = {name: aevb_main(cwd, argv, AEVB_DATA_DIR=env["AEVB_DATA_DIR"]) for name, argv in commands.items()}
    return SimpleNamespace(cwd=cwd, **res)


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
