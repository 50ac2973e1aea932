"""The explorer's HTTP API (`aevb serve`): answers against the model in Python, and a 4xx JSON error
for every bad input. A tiny digits run is trained once for the module; most requests go through
Flask's test client, and a few through a real `aevb serve` process on loopback."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

import aevb
from aevb.evaluate import log_likelihood
from aevb.preprocess import run_data
from aevb.serve import Explorer, create_app
from aevb.serve.app import MAX_BODY

K = 20  # importance samples of the likelihood table: the ranking only needs to be consistent


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("serve") / "digits"
    aevb.train(aevb.ModelConfig(latent_dim=2, hidden=(32,)), aevb.TrainConfig(dataset="digits", epochs=3), path)
    return path


@pytest.fixture(scope="module")
def explorer(run) -> Explorer:
    return Explorer(run, k=K)


@pytest.fixture(scope="module")
def client(explorer):
    return create_app(explorer).test_client()


@pytest.fixture(scope="module")
def test_x(run, explorer):
    x, labels, _ = run_data(explorer.config, explorer.train_cfg.binarize, "digits", "test")
    return x, labels


def post(client, path: str, body, raw: bool = False):
    data = body if raw else json.dumps(body)
    return client.post(path, data=data, content_type="application/json")


def decode_py(model, z) -> torch.Tensor:
    with torch.no_grad():
        return model.decode(torch.as_tensor(z, dtype=torch.float32).reshape(-1, model.config.latent_dim)).mean


# --- answers against ground truth -----------------------------------------------------------------


def test_decode_equals_the_model_in_python(client, explorer):
    for z in ([0.0, 0.0], [1.25, -0.7], [-3, 2]):
        r = post(client, "/api/decode", {"z": z})
        assert r.status_code == 200, r.get_json()
        got = torch.tensor(r.get_json()["x"])
        want = decode_py(explorer.model, z)[0]
        assert got.shape == (64,)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-7)
    a = post(client, "/api/decode", {"z": [0, 0]}).get_json()["x"]
    b = post(client, "/api/decode", {"z": [2, 2]}).get_json()["x"]
    assert max(abs(u - v) for u, v in zip(a, b)) > 0.01  # a different point decodes differently


def test_info_points_and_items_match_the_test_split(client, explorer, test_x):
    x, labels = test_x
    info = client.get("/api/info").get_json()
    assert info["latent_dim"] == 2 and info["data_shape"] == [8, 8] and info["items"] == 300
    assert info["plane"]["kind"] == "latent" and info["binarize"] == "dynamic"
    with torch.no_grad():
        mu = explorer.model.encode(x).mean
    pts = torch.tensor(client.get("/api/points").get_json()["points"])
    torch.testing.assert_close(pts, mu, rtol=0, atol=1e-5)  # the plane of a 2-D latent is z itself
    item = client.get("/api/items/17").get_json()
    assert item["label"] == int(labels[17])
    torch.testing.assert_close(torch.tensor(item["x"]), x[17].reshape(-1), rtol=0, atol=0)
    torch.testing.assert_close(torch.tensor(item["z"]), mu[17], rtol=0, atol=1e-7)


def test_interpolation_runs_between_the_two_posterior_means(client, explorer, test_x):
    with torch.no_grad():
        mu = explorer.model.encode(test_x[0][[3, 250]]).mean
    r = post(client, "/api/interpolate", {"from": 3, "to": 250, "steps": 5}).get_json()
    z = torch.tensor(r["z"])
    assert z.shape == (5, 2)
    torch.testing.assert_close(z[0], mu[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(z[-1], mu[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(z[2], (mu[0] + mu[1]) / 2, rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.tensor(r["x"]), decode_py(explorer.model, z), rtol=0, atol=1e-7)


def test_sample_is_z_from_the_prior_with_the_seed(client, explorer):
    r = post(client, "/api/sample", {"n": 3, "seed": 7}).get_json()
    want = torch.randn(3, 2, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(torch.tensor(r["z"]), want, rtol=0, atol=0)
    torch.testing.assert_close(torch.tensor(r["x"]), decode_py(explorer.model, want), rtol=0, atol=1e-7)


def test_ranking_orders_items_by_importance_sampled_log_px(client, explorer, test_x):
    ll = log_likelihood(explorer.model, test_x[0], k=K, seed=0)
    r = client.get("/api/ranking?n=5").get_json()
    assert r["k"] == K
    assert [row["index"] for row in r["most"]] == torch.argsort(ll, descending=True)[:5].tolist()
    assert [row["index"] for row in r["least"]] == torch.argsort(ll)[:5].tolist()
    assert r["most"][0]["log_likelihood"] == pytest.approx(ll.max().item(), abs=1e-4)


def test_page_and_static_files_are_served_without_external_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and b'id="plane"' in page.data
    for name in ("explorer.js", "explorer.css"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and len(r.data) > 500
        assert not re.search(rb"https?://", r.data), f"{name} refers to an outside URL"
    assert not re.search(rb"(src|href)=\"https?://", page.data)


# --- every bad input: a 4xx with a JSON error -------------------------------------------------------

BAD_DECODE = {
    "wrong length (1)": '{"z": [0.5]}',
    "wrong length (3)": '{"z": [0.5, 1, 2]}',
    "empty vector": '{"z": []}',
    "a string": '{"z": [0.5, "a"]}',
    "null": '{"z": [0.5, null]}',
    "a bool": '{"z": [true, 0]}',
    "nested list": '{"z": [[0.5], 1]}',
    "NaN": '{"z": [NaN, 0]}',
    "Infinity": '{"z": [Infinity, 0]}',
    "-Infinity": '{"z": [0, -Infinity]}',
    "overflows to inf": '{"z": [1e400, 0]}',
    "far outside the prior": '{"z": [1e5, 0]}',
    "not a list": '{"z": "0.5,0.5"}',
    "missing z": '{"x": [0, 0]}',
    "body not an object": "[0, 0]",
    "not JSON": "z=0.5,0.5",
    "truncated JSON": '{"z": [0.5, ',
    "deeply nested": '{"z": ' + "[" * 50_000 + "]" * 50_000 + "}",
}


@pytest.mark.parametrize("name", BAD_DECODE)
def test_decode_refuses_bad_input_with_a_json_4xx(client, name):
    body = BAD_DECODE[name]
    r = post(client, "/api/decode", body, raw=True)
    assert 400 <= r.status_code < 500, (name, r.status_code)
    assert isinstance(r.get_json()["error"], str) and r.get_json()["error"]
    if len(body) <= MAX_BODY:
        assert r.status_code == 400, (name, r.get_json())


def test_wrong_content_type_oversized_body_and_methods(client):
    r = client.post("/api/decode", data='{"z": [0, 0]}', content_type="text/plain")
    assert r.status_code == 415 and "JSON" in r.get_json()["error"]
    big = json.dumps({"z": [0.0] * (MAX_BODY // 4)})
    assert len(big) > MAX_BODY
    r = post(client, "/api/decode", big, raw=True)
    assert r.status_code == 413 and "larger than" in r.get_json()["error"]
    r = client.get("/api/decode")
    assert r.status_code == 405 and "error" in r.get_json()
    r = client.get("/api/nothing-here")
    assert r.status_code == 404 and "error" in r.get_json()


@pytest.mark.parametrize("item", ["300", "999999", "-1", "abc", "1.5", "%20"])
def test_unknown_items_are_404(client, item):
    r = client.get(f"/api/items/{item}")
    assert r.status_code == 404 and "unknown item" in r.get_json()["error"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"from": 0, "to": 300}, 404),
        ({"from": -1, "to": 2}, 404),
        ({"from": "x", "to": 2}, 404),
        ({"from": 1.5, "to": 2}, 404),
        ({"from": True, "to": 2}, 404),
        ({"to": 2}, 404),
        ({"from": 0, "to": 1, "steps": 1}, 400),
        ({"from": 0, "to": 1, "steps": 10_000}, 400),
        ({"from": 0, "to": 1, "steps": 2.5}, 400),
        ({"from": 0, "to": 1, "steps": "8"}, 400),
    ],
)
def test_interpolate_refuses_bad_input(client, body, status):
    r = post(client, "/api/interpolate", body)
    assert r.status_code == status and r.get_json()["error"]


@pytest.mark.parametrize("body", [{"n": 0}, {"n": 65}, {"n": "3"}, {"n": None}, {"seed": -1}, {"seed": 1e300}])
def test_sample_refuses_bad_input(client, body):
    r = post(client, "/api/sample", body)
    assert r.status_code == 400 and r.get_json()["error"]


@pytest.mark.parametrize("n", ["0", "101", "abc", "-3", "1e3", ""])
def test_ranking_refuses_bad_n(client, n):
    r = client.get(f"/api/ranking?n={n}")
    assert r.status_code == 400 and r.get_json()["error"]


# --- the command: a real server on loopback -------------------------------------------------------


def _env() -> dict:
    src = str(Path(__file__).resolve().parents[1] / "src")
    pythonpath = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath}


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "aevb serve printed no address in time"
    return proc.stdout.readline()


@pytest.mark.slow
def test_serve_command_on_loopback(run, explorer):
    cmd = [sys.executable, "-m", "aevb", "serve", str(run), "--port", "0", "--k", "5", "--no-progress"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _read_line(proc, 60)
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, line
        url = f"http://127.0.0.1:{m.group(1)}"
        with urllib.request.urlopen(url + "/api/info", timeout=10) as r:
            assert json.loads(r.read())["latent_dim"] == 2
        req = urllib.request.Request(
            url + "/api/decode", data=b'{"z": [0.25, -1]}', headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            x = json.loads(r.read())["x"]
        torch.testing.assert_close(torch.tensor(x), decode_py(explorer.model, [0.25, -1])[0], rtol=0, atol=1e-7)
        req = urllib.request.Request(url + "/api/decode", data=b'{"z": [NaN, 1]}', headers=req.headers)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 400 and "finite" in json.loads(e.value.read())["error"]
        # A client that announces a huge body and sends none is refused at once, not waited for.
        port = int(m.group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            t0 = time.monotonic()
            s.sendall(
                b"POST /api/decode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000000000\r\n\r\n"
            )
            answer = s.recv(4096).decode()
            assert answer.startswith("HTTP/1.1 413"), answer[:100]
            assert time.monotonic() - t0 < 5
    finally:
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert "Traceback" not in err, err


def test_serve_command_errors(run, tmp_path, capsys):
    """Refusals happen before serving, so they run in-process: one line on stderr, exit 1 (2 for argv)."""
    from aevb.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", str(run), "--port", str(taken.getsockname()[1]), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aevb: error: cannot listen on 127.0.0.1:") and err.count("\n") == 1, err
    # 192.0.2.1 is a documentation address: binding fails, nothing is exposed; the warning comes first
    assert main(["serve", str(run), "--host", "192.0.2.1", "--port", "0", "--no-progress"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("aevb: warning: listening on 192.0.2.1, not loopback")
    assert lines[1].startswith("aevb: error: cannot listen on 192.0.2.1")
    assert main(["serve", str(tmp_path / "missing"), "--port", "0", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aevb: error:") and "missing" in err and err.count("\n") == 1, err
    for argv in (["--k", "0"], ["--port", "x"]):
        with pytest.raises(SystemExit) as e:
            main(["serve", str(run), *argv])
        assert e.value.code == 2 and capsys.readouterr().err.startswith("aevb: error:")


# -- a conditional run -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "cvae"
    cfg = aevb.ModelConfig(latent_dim=2, hidden=(32,), condition_on="labels")
    aevb.train(cfg, aevb.TrainConfig(dataset="digits", epochs=3), path)
    ex = Explorer(path, k=K)
    return ex, create_app(ex).test_client()


def test_a_conditional_run_decodes_the_chosen_class(conditional):
    ex, client = conditional
    assert client.get("/api/info").get_json()["classes"] == 10
    z = [0.3, -0.2]
    for label in (0, 7):
        r = post(client, "/api/decode", {"z": z, "label": label}).get_json()
        with torch.no_grad():
            want = ex.model.decode(torch.tensor([z]), torch.tensor([label])).mean[0]
        assert r["label"] == label
        torch.testing.assert_close(torch.tensor(r["x"]), want, atol=1e-6, rtol=0)
    assert post(client, "/api/decode", {"z": z, "label": 10}).status_code == 400  # classes 0..9
    s = post(client, "/api/sample", {"n": 2, "seed": 1, "label": 3}).get_json()
    with torch.no_grad():
        want = ex.model.decode(torch.tensor(s["z"]), torch.tensor([3, 3])).mean
    torch.testing.assert_close(torch.tensor(s["x"]), want, atol=1e-6, rtol=0)
    # the items and the ranking use log p(x | y) with the test labels
    x, y, _ = run_data(ex.config, ex.train_cfg.binarize, "digits", "test")
    torch.testing.assert_close(ex.log_px, log_likelihood(ex.model, x, k=K, seed=0, y=y))


def test_an_unconditional_run_refuses_a_label(client):
    r = post(client, "/api/decode", {"z": [0.0, 0.0], "label": 1})
    assert r.status_code == 400 and "conditional" in r.get_json()["error"]


@pytest.mark.slow
def test_a_colour_run_is_shown_as_images(tmp_path):
    """(C, H, W) data with C = 3 are pictures for the page as for the report (`plots.is_image`)."""
    torch.set_num_threads(1)
    x = np.random.default_rng(0).uniform(size=(60, 3, 4, 4)).astype(np.float32)
    np.save(tmp_path / "rgb.npy", x)
    aevb.train(
        aevb.ModelConfig(latent_dim=2, hidden=(8,), likelihood="gaussian", sigma=0.3),
        aevb.TrainConfig(dataset=str(tmp_path / "rgb.npy"), epochs=1, batch_size=20),
        tmp_path / "rgb",
    )
    info = Explorer(tmp_path / "rgb", k=2).info()
    assert info["is_image"] is True and info["data_shape"] == [3, 4, 4]
