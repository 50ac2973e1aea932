"""Fuzzing every loader with random and mutated inputs: only aevb's own errors may come out.

Each loader gets a valid seed file, then hypothesis flips, inserts and deletes bytes, truncates
it, or replaces it with random bytes. A loader must either read the file or raise an
`AevbError` (DataError / CheckpointError): never another exception, a crash or a hang.
Examples are derandomised, so CI runs the same cases every time.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

import aevb
from aevb.checkpoint import load_checkpoint, read_config
from aevb.cli.train import read_config_file
from aevb.data.formats import read_amat, read_frey, read_idx, read_table

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# AEVB_FUZZ_EXAMPLES=5000 fuzzes longer, with fresh random cases each run
LONG = os.environ.get("AEVB_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(LONG or 120),
    deadline=None,
    derandomize=not LONG,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)


@functools.cache
def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="aevb-fuzz-"))


@functools.cache
def seeds() -> dict[str, bytes]:
    """One valid file per format, small enough to mutate quickly."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 4, 4), dtype=np.uint8)
    idx = struct.pack(">HBB3I", 0, 0x08, 3, *images.shape) + images.tobytes()
    amat = "".join(" ".join(str(v) for v in rng.integers(0, 2, 784)) + "\n" for _ in range(2)).encode()
    mat = io.BytesIO()
    scipy.io.savemat(mat, {"ff": rng.integers(0, 256, size=(560, 2), dtype=np.uint8)}, do_compression=True)
    npy = io.BytesIO()
    np.save(npy, rng.normal(size=(5, 3)))
    npz = io.BytesIO()
    np.savez(npz, X=rng.normal(size=(5, 3)), y=np.arange(5))
    csv = b"a,b,c\n" + b"".join(b"%g,%g,%g\n" % tuple(r) for r in rng.normal(size=(5, 3)))
    run = workdir() / "seed-run"
    if not run.exists():
        aevb.train(aevb.ModelConfig(hidden=(4,)), aevb.TrainConfig(epochs=1, checkpoint_minutes=0), run)
    return {
        "idx": idx,
        "idx.gz": gzip.compress(idx, mtime=0),
        "amat": amat,
        "mat": mat.getvalue(),
        "npy": npy.getvalue(),
        "npz": npz.getvalue(),
        "csv": csv,
        "model": (run / "model.safetensors").read_bytes(),
        "checkpoint": (run / "checkpoint.safetensors").read_bytes(),
        "config": (run / "config.json").read_bytes(),
    }


@st.composite
def mutated(draw, kind: str) -> bytes:
    """The seed file of `kind` with random damage, or random bytes."""
    data = bytearray(seeds()[kind])
    how = draw(st.sampled_from(["flip", "flip", "truncate", "insert", "delete", "random", "numbers"]))
    if how == "random":
        return draw(st.binary(max_size=2048))
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if how == "numbers":  # overwrite 4 or 8 bytes with a boundary integer: header sizes, offsets, shapes
        value = draw(st.sampled_from([0, 1, 2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1, 10**9]))
        width = draw(st.sampled_from([4, 8]))
        at = draw(st.integers(0, max(len(data) - width, 0)))
        order = draw(st.sampled_from(["<", ">"]))
        packed = struct.pack(f"{order}{'I' if width == 4 else 'Q'}", value % (1 << (8 * width)))
        data[at : at + width] = packed[: len(data) - at]
        return bytes(data)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if how == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif how == "delete" and data:
            del data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


def only_aevb_errors(call) -> None:
    try:
        call()
    except aevb.AevbError:
        pass  # the one allowed way to fail


def write(name: str, data: bytes) -> Path:
    path = workdir() / name
    path.write_bytes(data)
    return path


@FUZZ
@given(data=st.one_of(mutated("idx"), mutated("idx.gz")))
def test_fuzz_idx(data):
    only_aevb_errors(lambda: read_idx(write("f.idx", data)))


@FUZZ
@given(data=mutated("amat"))
def test_fuzz_amat(data):
    only_aevb_errors(lambda: read_amat(write("f.amat", data)))


@FUZZ
@given(data=mutated("mat"))
def test_fuzz_mat(data):
    only_aevb_errors(lambda: read_frey(write("f.mat", data)))


@FUZZ
@given(kind=st.sampled_from(["npy", "npz", "csv"]), data=st.data())
def test_fuzz_user_tables(kind, data):
    raw = data.draw(mutated(kind))
    only_aevb_errors(lambda: read_table(write(f"f.{kind}", raw)))
    only_aevb_errors(lambda: aevb.load_dataset(str(workdir() / f"f.{kind}")))


def _run_with(file: str, raw: bytes) -> Path:
    run = workdir() / "fuzz-run"
    if not run.exists():
        shutil.copytree(workdir() / "seed-run", run)
    for name, kind in (
        ("model.safetensors", "model"),
        ("checkpoint.safetensors", "checkpoint"),
        ("config.json", "config"),
    ):
        (run / name).write_bytes(raw if name == file else seeds()[kind])
    return run


@FUZZ
@given(data=mutated("model"))
def test_fuzz_model_file(data):
    only_aevb_errors(lambda: aevb.load(_run_with("model.safetensors", data)))


@FUZZ
@given(data=mutated("checkpoint"))
def test_fuzz_checkpoint_file(data):
    run = _run_with("checkpoint.safetensors", data)
    model = aevb.VAE(read_config(run)[0])
    only_aevb_errors(lambda: load_checkpoint(run, model, torch.optim.Adam(model.parameters()), torch.Generator()))


@FUZZ
@given(data=mutated("config"))
def test_fuzz_config_file(data):
    only_aevb_errors(lambda: aevb.load(_run_with("config.json", data)))
    only_aevb_errors(lambda: read_config_file(str(write("cfg.json", data))))


@FUZZ
@given(
    tree=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=4),
        max_leaves=12,
    ),
    section=st.sampled_from(["model", "train", None]),
    field=st.sampled_from(["hidden", "latent_dim", "lr", "epochs", "dataset", "likelihood", "data_shape", "x"]),
)
def test_fuzz_config_values(tree, section, field):
    # well-formed JSON with values of every type in every field: still only aevb's errors
    good = json.loads(seeds()["config"])
    if section is None:
        good = tree
    else:
        good[section] = {**good[section], field: tree}
    raw = json.dumps(good).encode()
    only_aevb_errors(lambda: aevb.load(_run_with("config.json", raw)))
    only_aevb_errors(lambda: read_config_file(str(write("cfg.json", raw))))
