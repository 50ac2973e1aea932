"""Running `python -m aevb` in a subprocess from the tests, and reading what a run leaves on disk.

The commands run with one thread each (these networks are tiny; on a busy 2-core machine torch's
worker threads made each epoch ~100x slower) and import this checkout's `src`, whatever is installed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

SRC = Path(__file__).resolve().parents[1] / "src"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WORKERS = max(2, min(8, os.cpu_count() or 2))


def subprocess_env(**extra: str) -> dict:
    """os.environ with one thread per process, this checkout's src first on PYTHONPATH, and `extra`."""
    pythonpath = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": pythonpath, **extra}


def aevb_cmd(cwd: Path, env: dict, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "aevb", *map(str, args)]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def aevb_main(cwd: Path, argv: list, **environ: str) -> subprocess.CompletedProcess:
    """`aevb.cli.main(argv)` run in this process, in `cwd` with `environ` set: what `aevb_cmd` returns,
    without the ~2 s of importing torch in a new process. For checks that are not about the process boundary;
    not thread-safe (it changes the working directory): run commands one after another."""
    from aevb.cli import main

    out, err, old_cwd, old_env = io.StringIO(), io.StringIO(), os.getcwd(), dict(os.environ)
    threads, rng = torch.get_num_threads(), torch.get_rng_state()  # a command may seed torch's global generator
    try:
        torch.set_num_threads(1)  # as subprocess_env's OMP_NUM_THREADS=1: tiny networks, busy machine
        os.chdir(cwd)
        os.environ.update(environ)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("default")  # as in a fresh process, and shown on its stderr (not pytest's record)
            warnings.showwarning = lambda m, c, f, n, file=None, line=None: err.write(
                warnings.formatwarning(m, c, f, n, line)
            )
            try:
                code = main([str(a) for a in argv])
            except SystemExit as e:  # argparse: usage errors exit 2 from inside the parser
                code = e.code if isinstance(e.code, int) else 1
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(rng)
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
    return subprocess.CompletedProcess(["aevb", *map(str, argv)], code, out.getvalue(), err.getvalue())


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(cwd: Path, env: dict, procs: int, *args) -> list[subprocess.Popen]:
    """`python -m aevb ARGS` as `procs` ranks of one torch.distributed run, started with the environment
    torchrun gives them (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT), stdout and stderr piped."""
    argv = [sys.executable, "-m", "aevb", *map(str, args)]
    base = {**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(procs)}
    return [
        subprocess.Popen(
            argv,
            cwd=cwd,
            env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(procs)
    ]


def aevb_ranks(cwd: Path, env: dict, procs: int, *args) -> subprocess.CompletedProcess:
    """`start_ranks`, waited for: what torchrun does, without its own process (~2 s of importing torch).
    Every rank must succeed; their stdout and their stderr, each concatenated in rank order."""
    ranks = start_ranks(cwd, env, procs, *args)
    try:
        with ThreadPoolExecutor(procs) as pool:
            outs = list(pool.map(lambda p: p.communicate(timeout=600), ranks))
    finally:
        for p in ranks:
            p.kill()
            p.wait()
    for r, (p, (_, err)) in enumerate(zip(ranks, outs)):
        assert p.returncode == 0, f"rank {r}: exit {p.returncode}\n{err[-3000:]}"
    return subprocess.CompletedProcess(ranks[0].args, 0, "".join(o for o, _ in outs), "".join(e for _, e in outs))


def start(cwd: Path, env: dict, *args) -> subprocess.Popen:
    argv = [sys.executable, "-m", "aevb", *map(str, args)]
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def one_line_error(r: subprocess.CompletedProcess, *fragments: str) -> str:
    """The single `aevb: error:` line of a failed command, checked to contain each fragment."""
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aevb: error: "), r.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def wait_for(path: Path, p: subprocess.Popen, timeout: float = 120) -> float:
    """Block until `path` exists (the trainer has loaded its data and started); returns the time."""
    end = time.monotonic() + timeout
    while not path.exists():
        assert p.poll() is None, p.stderr.read() if p.stderr else p.returncode
        assert time.monotonic() < end, f"{path} did not appear"
        time.sleep(0.005)
    return time.monotonic()


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def trainer_state(run: Path) -> dict:
    with safe_open(str(run / "checkpoint.safetensors"), framework="pt") as f:
        return json.loads(f.metadata()["trainer"])


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


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
