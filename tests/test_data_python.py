"""Training on data from Python (aevb.train(data=...)): every kind of input gives the parameters of the
same rows read from a CSV file; bad input is a one-line DataError; a run remembers it came from Python."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import aevb
from aevb.data.python import from_python
from aevb.errors import AevbError, DataError

_MODEL = aevb.ModelConfig(latent_dim=2, hidden=(8,), likelihood="gaussian")


def _rows() -> np.ndarray:
    """200 rows of 5 real features (a fixed seed): the ground truth every input form carries."""
    return np.random.default_rng(1).normal(size=(200, 5)).round(4)


def _fit(**kwargs) -> aevb.VAE:
    return aevb.train(_MODEL, aevb.TrainConfig(epochs=1, batch_size=32, seed=3), **kwargs)


class _Rows(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = torch.as_tensor(x, dtype=torch.float32)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def test_array_tensor_frame_dataset_and_csv_train_the_same_parameters(tmp_path):
    x = _rows()
    path = tmp_path / "rows.csv"
    np.savetxt(path, x, delimiter=",", fmt="%.4f")
    want = _fit(dataset=aevb.load_dataset(str(path))).state_dict()
    inputs = {
        "array": x,
        "tensor": torch.tensor(x),
        "frame": pd.DataFrame(x, columns=list("abcde")),
        "dataset": _Rows(x),
    }
    for kind, data in inputs.items():
        got = _fit(data=data).state_dict()
        assert got.keys() == want.keys()
        for key in want:
            assert torch.equal(got[key], want[key]), (kind, key)


def test_the_split_matches_a_file_and_valid_replaces_it(tmp_path):
    x = _rows()
    path = tmp_path / "rows.csv"
    np.savetxt(path, x, delimiter=",", fmt="%.4f")
    ds, ref = from_python(x), aevb.load_dataset(str(path))
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(ds, split), getattr(ref, split))
    ds = from_python(x[:150], valid=x[150:], labels=np.arange(150) % 3, valid_labels=np.arange(50) % 3)
    assert torch.equal(ds.train, torch.tensor(x[:150], dtype=torch.float32))
    assert torch.equal(ds.valid, torch.tensor(x[150:], dtype=torch.float32))
    assert torch.equal(ds.train_labels, torch.arange(150) % 3)


def test_train_takes_labels_for_data_and_valid_alike():
    """aevb.train(data=, labels=, valid=, valid_labels=) trains on the same Dataset as from_python builds from them,
    bit for bit; labels for one part only, or valid_labels without data, are one-line errors."""
    x, y = _rows(), np.arange(200) % 3
    config = aevb.ModelConfig(latent_dim=2, hidden=(8,), likelihood="gaussian", condition_on="labels", classes=3)
    parts = {"labels": y[:150], "valid": x[150:], "valid_labels": y[150:]}
    train = aevb.TrainConfig(epochs=1, batch_size=32, seed=3)
    want = aevb.train(config, train, dataset=from_python(x[:150], **parts)).state_dict()
    got = aevb.train(config, train, data=x[:150], **parts).state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    with pytest.raises(DataError, match="labels are needed for both data and valid, or for neither"):
        aevb.train(config, train, data=x[:150], labels=y[:150], valid=x[150:])
    with pytest.raises(AevbError, match="go with data="):
        aevb.train(config, train, valid_labels=y[150:])


def test_labels_come_from_dataset_pairs():
    x = torch.tensor(_rows(), dtype=torch.float32)
    y = torch.arange(200) % 4
    ds = from_python(torch.utils.data.TensorDataset(x, y))
    ref = from_python(x, labels=y.numpy())
    assert torch.equal(ds.train, ref.train) and torch.equal(ds.train_labels, ref.train_labels)
    assert ds.name == "python:200x5"


def test_categorical_frame_columns_are_their_codes_for_mixed():
    rng = np.random.default_rng(2)
    colours = np.array(["red", "green", "blue"])[rng.integers(0, 3, 120)]
    frame = pd.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120), "colour": colours})
    frame["colour"] = frame["colour"].astype("category")
    ds = from_python(frame)
    codes = frame["colour"].cat.codes.to_numpy()  # blue 0, green 1, red 2 (sorted categories)
    all_rows = torch.cat([ds.train, ds.valid, ds.test])
    assert sorted(all_rows[:, 2].tolist()) == sorted(codes.astype(float).tolist())
    assert set(all_rows[:, 2].tolist()) == {0.0, 1.0, 2.0}
    config = aevb.ModelConfig(latent_dim=2, hidden=(8,), likelihood="mixed", columns="gaussian:2,categorical3:1")
    model = aevb.train(config, aevb.TrainConfig(epochs=1, seed=0), data=frame)
    p = model.decode(torch.zeros(1, 2))
    assert torch.isfinite(p.log_prob(ds.train[:1])).all()


@pytest.mark.parametrize(
    "data, message",
    [
        (np.array([[1.0, np.nan], [2.0, 3.0], [4.0, 5.0]]), "NaN or inf"),
        (np.array([[1.0, np.inf], [2.0, 3.0], [4.0, 5.0]]), "NaN or inf"),
        (np.zeros((4, 2, 3, 2, 2)), "features must be 2-D"),
        (np.zeros((0, 3)), "empty"),
        (pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]}), "column 'b' holds str, not numbers"),
        (pd.DataFrame({"a": [1.0, 2.0, None]}), "NaN or inf"),
        (np.array([[1.0, 2.0], [3.0]], dtype=object), "Python objects"),
    ],
)
def test_bad_input_is_one_line(data, message):
    with pytest.raises(DataError) as e:
        _fit(data=data)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_table_support_is_checked_by_the_likelihood():
    x = np.random.default_rng(0).normal(size=(50, 3))
    config = aevb.ModelConfig(latent_dim=2, hidden=(8,), likelihood="poisson")
    with pytest.raises(DataError) as e:
        aevb.train(config, aevb.TrainConfig(epochs=1), data=x)
    assert "python:50x3 (train)" in str(e.value) and "\n" not in str(e.value)


def test_a_python_run_records_it_and_resuming_needs_data(tmp_path):
    x = _rows()
    run = tmp_path / "run"
    aevb.train(_MODEL, aevb.TrainConfig(epochs=1, seed=0), run, data=x)
    stored = json.loads((run / "config.json").read_text())
    assert stored["train"]["dataset"] == "python:200x5"
    with pytest.raises(
        AevbError, match=r"trained on data from Python \(python:200x5\): resume it from Python with aevb.train"
    ):
        aevb.train(None, aevb.TrainConfig(epochs=2), run, resume=True)
    model = aevb.train(None, aevb.TrainConfig(epochs=2), run, resume=True, data=x)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines if '"epoch"' in line][-1] == 2
    assert model is not None


def test_commands_on_a_python_run_ask_for_the_rows_as_a_file(tmp_path):
    """A run does not store rows from Python: `aevb eval` says so in one line, and scores them from --data
    exactly as aevb.log_likelihood does in Python (same per-example noise seeds)."""
    from aevb_process import aevb_main, one_line_error

    x = _rows()
    model = aevb.train(_MODEL, aevb.TrainConfig(epochs=1, seed=0), tmp_path / "run", data=x)
    one_line_error(aevb_main(tmp_path, ["eval", "run"]), "trained on rows from Python (python:200x5)", "--data FILE")
    np.savetxt(tmp_path / "rows.csv", x, delimiter=",")
    r = aevb_main(tmp_path, ["eval", "run", "--data", "rows.csv", "--k", "10", "--no-progress"])
    assert r.returncode == 0, r.stderr
    record = json.loads((tmp_path / "run" / "eval_file_rows.json").read_text())
    expected = aevb.log_likelihood(model, torch.as_tensor(x, dtype=torch.float32), k=10, seed=0)
    assert record["examples"] == 200
    assert record["log_likelihood"] == pytest.approx(expected.mean().item(), abs=1e-4)
