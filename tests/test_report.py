"""`aevb report`: one self-contained HTML file whose numbers equal aevb's own evaluation.

A tiny digits run (2-D latent: the latent itself and the manifold) and a tiny table run (3-D
latent: a PCA projection, per-feature statistics instead of image grids) are trained in-test.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import aevb
from aevb.evaluate import elbo_terms, log_likelihood
from aevb.preprocess import run_data
from aevb.projection import latent_projection
from aevb.report import DEFAULT_K, N_TABLE_SAMPLES, table_statistics, write_report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report")
    aevb.train(aevb.ModelConfig(latent_dim=2, hidden=(32,)), aevb.TrainConfig(dataset="digits", epochs=3), root / "d")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 4)) + 0.3 * rng.normal(size=(200, 4)) + 1.0
    np.savetxt(root / "t.csv", x, delimiter=",")
    aevb.train(
        aevb.ModelConfig(latent_dim=3, hidden=(16,), likelihood="gaussian", sigma=0.5),
        aevb.TrainConfig(dataset=str(root / "t.csv"), epochs=3, batch_size=50),
        root / "t",
    )
    return root


def summary(page: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="aevb-summary">(.*?)</script>', page).group(1))


def images(page: str) -> dict[str, bytes]:
    """alt text -> PNG bytes of every <img>; fails on any image that is not an embedded PNG."""
    out = {}
    for alt, src in re.findall(r'<img alt="([^"]*)" src="([^"]*)"', page):
        assert src.startswith("data:image/png;base64,"), (alt, src[:40])
        out[alt] = base64.b64decode(src.split(",", 1)[1])
        assert out[alt][:8] == PNG
    assert len(out) == page.count("<img")
    return out


def test_image_report_is_self_contained_and_its_numbers_are_aevbs(runs):
    run = runs / "d"
    path = write_report(run)
    assert path == run / "report.html" and not list(run.glob(".*.tmp"))
    page = path.read_text()
    assert not re.search(r'(src|href)="(?!data:)', page), "the report links to something outside itself"
    assert set(images(page)) == {
        "Training and validation curves",
        "samples",
        "reconstructions",
        "latent space",
        "The learned 2-D manifold",
    }
    model = aevb.load(run)
    x, _, _ = run_data(model.config, "dynamic", "digits", "test")
    s = summary(page)
    assert s["k"] == DEFAULT_K and s["binarize"] == "dynamic" and s["examples"] == 300
    assert s["elbo"] == pytest.approx(elbo_terms(model, x, seed=0).elbo.double().mean().item(), abs=1e-6)
    assert s["log_likelihood"] == pytest.approx(log_likelihood(model, x, k=DEFAULT_K, seed=0).double().mean().item())
    assert f"k = {DEFAULT_K}" in page and "test set binarised once (fixed seed 2)" in page
    assert "Test posterior means (the latent itself)" in page and 'id="model-config"' in page


def test_report_reads_a_current_eval_test_json_and_k_overrides_it(runs, capsys):
    from aevb.cli import main

    run = runs / "d"
    assert main(["eval", str(run), "--k", "7", "--no-progress"]) == 0
    stored = json.loads((run / "eval_test.json").read_text())
    s = summary(write_report(run).read_text())
    assert s["k"] == 7 and s["log_likelihood"] == stored["log_likelihood"]
    assert "read from eval_test.json" in (run / "report.html").read_text()
    assert summary(write_report(run, k=3).read_text())["k"] == 3  # --k recomputes
    os.utime(run / "eval_test.json", (1, 1))  # older than the model: stale, recomputed with the default k
    assert summary(write_report(run).read_text())["k"] == DEFAULT_K


def test_table_report_shows_feature_statistics_and_a_pca_projection(runs):
    run = runs / "t"
    page = write_report(run, k=5).read_text()
    assert set(images(page)) == {"Training and validation curves", "feature statistics", "latent space"}
    assert "a PCA projection to 2-D" in page and "Prior samples" not in page
    model = aevb.load(run)
    x, _, _ = run_data(model.config, "none", str(runs / "t.csv"), "test")
    rows = re.findall(r"<tr><td>x(\d+)</td>((?:<td>[^<]*</td>){5})</tr>", page)
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4]
    table = np.array([[float(v) for v in re.findall(r"<td>([^<]*)</td>", r[1])] for r in rows])
    with torch.no_grad():
        rmse = (x - model.decode(model.encode(x).mean).mean).pow(2).mean(0).sqrt()
    np.testing.assert_allclose(table[:, 0], x.mean(0).numpy(), rtol=1e-3)  # data mean (4 significant digits)
    np.testing.assert_allclose(table[:, 4], rmse.numpy(), rtol=1e-3)


def test_table_sample_statistics_match_the_model_in_closed_form(runs):
    """For a fixed-sigma Gaussian decoder, E[x] = E_z[f(z)] and Var[x] = Var_z[f(z)] + sigma^2."""
    model = aevb.load(runs / "t")
    x, _, _ = run_data(model.config, "none", str(runs / "t.csv"), "test")
    st = table_statistics(model, x, seed=0)
    with torch.no_grad():
        f = model.decode(torch.randn(200_000, 3, generator=torch.Generator().manual_seed(1))).mean
    se = np.sqrt((f.var(0) + 0.25).numpy() / N_TABLE_SAMPLES)
    assert np.all(np.abs(st["sample_mean"] - f.mean(0).numpy()) < 4 * se)
    np.testing.assert_allclose(st["sample_std"], (f.var(0) + 0.25).sqrt().numpy(), rtol=0.1)


def test_latent_projection():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(5, 2)))[0].T  # (2, 5) orthonormal
    mu = rng.normal(size=(400, 2)) * [3.0, 1.0] @ basis + 2.0
    p = latent_projection(mu)
    assert p.kind == "pca" and p.axes[0].startswith("PC1") and "(100% of variance)" not in p.axes[0]
    np.testing.assert_allclose(p(mu) @ p.components + p.center, mu, atol=1e-9)  # a plane is kept exactly
    np.testing.assert_allclose(np.abs(p.components @ basis.T), np.eye(2), atol=0.05)  # and its axes found
    two = latent_projection(mu[:, :2])
    assert two.kind == "latent"
    np.testing.assert_array_equal(two(mu[:, :2]), mu[:, :2])


def _env() -> dict:
    src = str(Path(__file__).resolve().parents[1] / "src")
    pythonpath = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath}


@pytest.mark.slow
def test_report_command(runs, tmp_path, capsys):
    from aevb.cli import main

    out = tmp_path / "r.html"
    r = subprocess.run(
        [sys.executable, "-m", "aevb", "report", str(runs / "d"), "--out", str(out), "--k", "5", "--no-progress"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.strip() == f"report written to {out}" and summary(out.read_text())["k"] == 5
    assert main(["report", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aevb: error:") and err.count("\n") == 1
    assert main(["report", str(runs / "d"), "--out", str(tmp_path / "no" / "r.html")]) == 1
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "no").exists()
    with pytest.raises(SystemExit) as e:
        main(["report", str(runs / "d"), "--k", "0"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert f"else {DEFAULT_K}" in capsys.readouterr().out.replace("\n", " ").replace("  ", " ")
