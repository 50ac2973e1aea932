"""`aevb.checkpoint`: exact round trips through safetensors + JSON, and every lying or foreign file refused."""

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import aevb

SMALL = aevb.ModelConfig(hidden=(32,), latent_dim=2)


def _params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_checkpoint_round_trip_is_exact(tmp_path, digits):
    model = aevb.train(SMALL, aevb.TrainConfig(epochs=2), tmp_path / "r", dataset=digits)
    loaded = aevb.load(tmp_path / "r")
    _assert_same(_params(model), _params(loaded))
    assert loaded.config == model.config and not loaded.training
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(model.sample(8, g()), loaded.sample(8, g()))


def _write_weights(run: Path, tensors: dict) -> None:
    save_file(tensors, str(run / "model.safetensors"))


def test_checkpoints_that_lie_are_refused(tmp_path, digits):
    run = tmp_path / "r"
    model = aevb.train(SMALL, aevb.TrainConfig(epochs=1), run, dataset=digits)
    good = {k: v.clone() for k, v in model.state_dict().items()}
    bad_shape = {**good, "decoder.net.0.weight": torch.zeros(3, 3)}
    _write_weights(run, bad_shape)
    with pytest.raises(aevb.CheckpointError, match=r"decoder.net.0.weight is torch.float32 \(3, 3\), the config needs"):
        aevb.load(run)
    _write_weights(run, {**good, "encoder.net.0.weight": good["encoder.net.0.weight"].double()})
    with pytest.raises(aevb.CheckpointError, match="float64"):
        aevb.load(run)
    _write_weights(run, {k: v for k, v in good.items() if k != "encoder.net.0.bias"})
    with pytest.raises(aevb.CheckpointError, match="does not match the config"):
        aevb.load(run)
    _write_weights(run, {**good, "encoder.net.0.bias": torch.full_like(good["encoder.net.0.bias"], float("nan"))})
    with pytest.raises(aevb.CheckpointError, match="NaN or inf"):
        aevb.load(run)
    # a header that claims more bytes than the file holds
    raw = bytearray((run / "model.safetensors").read_bytes())
    (run / "model.safetensors").write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(aevb.CheckpointError, match="corrupt or truncated"):
        aevb.load(run)


class _Trap:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_is_never_loaded(tmp_path, digits):
    run = tmp_path / "r"
    aevb.train(SMALL, aevb.TrainConfig(epochs=1), run, dataset=digits)
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"state_dict": _Trap(marker)})
    for name in ("model.safetensors", "checkpoint.safetensors"):
        (run / name).write_bytes(payload)
    with pytest.raises(aevb.CheckpointError, match="corrupt or truncated"):
        aevb.load(run)
    with pytest.raises(aevb.CheckpointError, match="corrupt or truncated"):
        aevb.train(None, aevb.TrainConfig(epochs=2), run, dataset=digits, resume=True)
    assert not marker.exists()
    pickle.loads(payload)  # the trap is real: unpickling it does create the marker
    assert marker.exists()


def test_unknown_config_version_is_refused(tmp_path, digits):
    run = tmp_path / "r"
    aevb.train(SMALL, aevb.TrainConfig(epochs=1), run, dataset=digits)
    d = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**d, "version": 99}))
    with pytest.raises(aevb.CheckpointError, match="config version 99 is not supported"):
        aevb.load(run)
