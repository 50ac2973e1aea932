"""No pickle is ever loaded: malicious payloads planted in every place the library and the command line
read a file run nothing."""

from __future__ import annotations

import io
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import aevb
import aevb.data.builtin
from aevb_process import (
    aevb_main,
    one_line_error,
)

# --- no pickle is ever loaded ------------------------------------------------------------------


class _Payload:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _pickle_bytes(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker), protocol=4)


def _npy_object(marker: Path) -> bytes:
    b = io.BytesIO()
    np.save(b, np.array([_Payload(marker), 1], dtype=object), allow_pickle=True)
    return b.getvalue()


def _npz_object(marker: Path) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        z.writestr("X.npy", _npy_object(marker))
    return b.getvalue()


def _torch_save(marker: Path) -> bytes:
    b = io.BytesIO()
    torch.save({"w": _Payload(marker)}, b)
    return b.getvalue()


def test_sanity_the_payloads_do_run_code_when_unpickled(tmp_path):
    # the test below is only meaningful if these files really execute code in a careless loader
    marker = tmp_path / "m"
    pickle.loads(_pickle_bytes(marker))
    assert marker.exists()
    marker.unlink()
    np.load(io.BytesIO(_npy_object(marker)), allow_pickle=True)
    assert marker.exists()
    marker.unlink()
    torch.load(io.BytesIO(_torch_save(marker)), weights_only=False)
    assert marker.exists()


PAYLOADS = {"pickle": _pickle_bytes, "torch.save": _torch_save, "npy-object": _npy_object, "npz-object": _npz_object}
RUN_FILES = ("model.safetensors", "checkpoint.safetensors", "config.json", "metrics.jsonl")
BUILTIN_FILES = (
    ("mnist", "mnist", "train-images-idx3-ubyte.gz"),
    ("binarized-mnist", "binarized-mnist", "binarized_mnist_train.amat"),
    ("frey-face", "frey-face", "frey_rawface.mat"),
)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("good") / "run"
    aevb.train(aevb.ModelConfig(hidden=(16,)), aevb.TrainConfig(epochs=1), run)
    return run


def _plant(path: Path, payload: str, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PAYLOADS[payload](marker))
    return path


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_malicious_file_in_each_place_the_library_reads_runs_nothing(tmp_path, good_run, payload):
    from aevb.checkpoint import load_checkpoint, read_config
    from aevb.cli.train import read_config_file
    from aevb.rundir import read_metrics

    marker = tmp_path / "PWNED"
    for fname in RUN_FILES:
        run = tmp_path / f"run-{fname}"
        shutil.copytree(good_run, run)
        _plant(run / fname, payload, marker)
        if fname == "metrics.jsonl":  # JSON lines: a pickle holds no record
            assert read_metrics(run) == []
            continue
        with pytest.raises(aevb.CheckpointError):
            if fname == "checkpoint.safetensors":
                model = aevb.VAE(read_config(good_run)[0])
                load_checkpoint(run, model, torch.optim.Adam(model.parameters()), torch.Generator())
            else:
                aevb.load(run)
    for suffix in (".npy", ".npz", ".csv"):
        path = _plant(tmp_path / f"user{suffix}", payload, marker)
        with pytest.raises(aevb.DataError):
            aevb.load_dataset(str(path))
    for name, folder, fname in BUILTIN_FILES:
        data_dir = tmp_path / f"data-{name}"
        _plant(data_dir / folder / fname, payload, marker)
        for other in aevb.data.builtin.BUILTIN[name].files:  # the real files beside it, but for this one
            if other.name != fname:
                (data_dir / folder / other.name).write_bytes(b"")
        with pytest.raises(aevb.DataError):
            aevb.load_dataset(name, data_dir, download=False)
    with pytest.raises(aevb.AevbError):
        read_config_file(str(_plant(tmp_path / "cfg.json", payload, marker)))
    assert not marker.exists(), "code in a file ran"


@pytest.mark.slow
def test_malicious_files_through_the_command_line_run_nothing(tmp_path, good_run, shared_data):
    marker = tmp_path / "PWNED"
    for f in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / "data" / "mnist").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "mnist" / f).symlink_to(shared_data / "mnist" / f)  # the real ones, but one
    for fname in ("model.safetensors", "checkpoint.safetensors"):
        shutil.copytree(good_run, tmp_path / f"run-{fname}")
        _plant(tmp_path / f"run-{fname}" / fname, "torch.save", marker)
    _plant(tmp_path / "evil.npy", "npy-object", marker)
    _plant(tmp_path / "evil.npz", "npz-object", marker)
    _plant(tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz", "pickle", marker)
    _plant(tmp_path / "cfg.json", "pickle", marker)
    commands = {
        "eval": (["eval", "run-model.safetensors", "--k", "2", "--no-progress"], "model.safetensors is corrupt"),
        "resume": (["train", "--resume", "run-checkpoint.safetensors", "--epochs", "2"], "is corrupt"),
        "--data": (["eval", good_run, "--data", "evil.npy", "--k", "2"], "aevb never loads pickles"),
        "--dataset": (["train", "--dataset", "evil.npz", "--out", "o1"], "aevb never loads pickles"),
        "builtin": (["train", "--dataset", "mnist", "--data-dir", "data", "--out", "o2"], "train-images-idx3-ubyte"),
        "--config": (["train", "--config", "cfg.json"], "not a readable JSON file"),
    }
    # in-process (`aevb.cli.main`; a subprocess each spent ~2 s importing torch): an unpickled payload would
    # create the marker just the same
    results = {k: aevb_main(tmp_path, argv) for k, (argv, _) in commands.items()}
    for name, (_, message) in commands.items():
        one_line_error(results[name], message)
    assert not marker.exists(), "code in a file ran"
