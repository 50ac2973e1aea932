"""Training, resuming and checkpoints: exact round trips, bitwise resume, real-data learning."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import aevb
from aevb.checkpoint import load_checkpoint
from aevb.evaluate import elbo_terms
from aevb.preprocess import split
from aevb.rundir import read_metrics

SMALL = aevb.ModelConfig(hidden=(32,), latent_dim=2)


def _params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize(
    "train_kw",
    [
        dict(optimizer="adam"),
        dict(optimizer="adagrad", lr=0.02, weight_decay=1e-4),
        dict(optimizer="sgd", lr=0.01, estimator="mc", samples=2),
        dict(objective="iwae", k=4),
    ],
)
def test_resume_is_bitwise_equal_to_an_uninterrupted_run(tmp_path, digits, train_kw):
    cfg = aevb.TrainConfig(epochs=4, seed=3, **train_kw)
    whole = aevb.train(SMALL, cfg, tmp_path / "whole", dataset=digits)
    aevb.train(SMALL, aevb.TrainConfig(**{**cfg.__dict__, "epochs": 2}), tmp_path / "part", dataset=digits)
    assert aevb.train(None, None, tmp_path / "part", dataset=digits, resume=True)  # no-op: stored epochs = 2
    assert [r["epoch"] for r in read_metrics(tmp_path / "part")] == [1, 2]
    resumed = aevb.train(None, aevb.TrainConfig(epochs=4), tmp_path / "part", dataset=digits, resume=True)
    _assert_same(_params(whole), _params(resumed))
    # the optimiser state and the RNG stream were restored too, not only the weights
    m1, m2 = aevb.VAE(whole.config), aevb.VAE(whole.config)
    o1, o2 = torch.optim.Adam(m1.parameters()), torch.optim.Adam(m2.parameters())
    if train_kw.get("optimizer", "adam") == "adam":
        g1, g2 = torch.Generator(), torch.Generator()
        s1 = load_checkpoint(tmp_path / "whole", m1, o1, g1)
        s2 = load_checkpoint(tmp_path / "part", m2, o2, g2)
        assert s1["epoch"] == s2["epoch"] == 4 and s1["step"] == s2["step"] == 4 * 13
        assert torch.equal(g1.get_state(), g2.get_state())
        for p1, p2 in zip(m1.parameters(), m2.parameters()):
            assert torch.equal(o1.state[p1]["exp_avg_sq"], o2.state[p2]["exp_avg_sq"])
    epochs = [r["epoch"] for r in read_metrics(tmp_path / "part")]
    assert epochs == [1, 2, 3, 4]
    assert json.loads((tmp_path / "part" / "config.json").read_text())["train"]["epochs"] == 4


def test_checkpoint_round_trip_is_exact(tmp_path, digits):
    model = aevb.train(SMALL, aevb.TrainConfig(epochs=2), tmp_path / "r", dataset=digits)
    loaded = aevb.load(tmp_path / "r")
    _assert_same(_params(model), _params(loaded))
    assert loaded.config == model.config and not loaded.training
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(model.sample(8, g()), loaded.sample(8, g()))


def test_resume_after_a_crash_between_metrics_and_checkpoint(tmp_path, digits):
    # a record written for an epoch whose checkpoint never landed is dropped and trained again
    aevb.train(SMALL, aevb.TrainConfig(epochs=2), tmp_path / "r", dataset=digits)
    with open(tmp_path / "r" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 3, "valid_elbo": 0.0}) + "\n" + '{"epoch": 4, "val')  # torn line
    aevb.train(None, aevb.TrainConfig(epochs=3), tmp_path / "r", dataset=digits, resume=True)
    records = read_metrics(tmp_path / "r")
    assert [r["epoch"] for r in records] == [1, 2, 3] and records[-1]["valid_elbo"] < -1


def test_refuses_to_overwrite_a_run(tmp_path, digits):
    aevb.train(SMALL, aevb.TrainConfig(epochs=1), tmp_path / "r", dataset=digits)
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    with pytest.raises(aevb.AevbError, match="already holds a run"):
        aevb.train(SMALL, aevb.TrainConfig(epochs=1), tmp_path / "r", dataset=digits)
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before


def test_divergence_stops_with_a_clear_error(tmp_path):
    x = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32) * 1e3
    np.save(tmp_path / "big.npy", x)
    cfg = aevb.TrainConfig(dataset=str(tmp_path / "big.npy"), epochs=3, optimizer="sgd", lr=1e6)
    msg = r"diverged at step 2 \(epoch 1, batch 2 of 2\): the loss is NaN or inf; .* has no checkpoint yet"
    with pytest.raises(aevb.AevbError, match=msg):
        aevb.train(aevb.ModelConfig(likelihood="gaussian"), cfg, tmp_path / "r")
    aevb.load(tmp_path / "r")  # the initial weights stay loadable


def test_a_nonfinite_gradient_under_a_finite_loss_stops_or_is_skipped_before_the_parameters_move():
    from aevb.errors import DivergedError
    from aevb.loop import Fitting, _nonfinite, run_epoch

    loss, big = torch.tensor(3.0), torch.full((4, 4), 1e30)  # finite, though its L2 norm overflows
    grads = [torch.zeros(3), big]
    params = [torch.zeros_like(t).requires_grad_() for t in grads]
    for p, gr in zip(params, grads):
        p.grad = gr
    assert _nonfinite(loss, params) is None
    for bad in (float("nan"), float("inf"), -float("inf")):
        assert _nonfinite(torch.tensor(bad), params) == "loss"
    big[0, 0], big[1, 1] = float("inf"), -float("inf")  # their sum is NaN; a sum cannot cancel them away
    assert _nonfinite(loss, params) == "gradient"
    big[0, 0], big[1, 1] = 1e30, float("nan")
    assert _nonfinite(loss, params) == "gradient"

    x = torch.bernoulli(torch.full((64, 16), 0.4), generator=torch.Generator().manual_seed(0))
    for nonfinite in ("stop", "skip"):
        torch.manual_seed(0)
        model = aevb.VAE(aevb.ModelConfig(data_shape=(16,), latent_dim=2, hidden=(8,)))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        weight = model.decoder.net[-1].weight
        weight.register_hook(lambda gr: torch.where(torch.arange(gr.numel()).view_as(gr) == 5, float("nan"), gr))
        before = [p.detach().clone() for p in model.parameters()]
        config = aevb.TrainConfig(batch_size=32, binarize="none", nonfinite=nonfinite)
        if nonfinite == "stop":
            with pytest.raises(DivergedError, match="at step 1 of epoch 1: the gradient is NaN or inf"):
                run_epoch(Fitting.of(model, opt, torch.Generator().manual_seed(0), config), x, config)
        else:
            pos = run_epoch(Fitting.of(model, opt, torch.Generator().manual_seed(0), config), x, config)
            assert (pos.skipped, pos.counted, pos.steps) == (2, 0, 2)
        assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_the_epoch_yields_when_a_checkpoint_is_due_and_saves_nothing_itself():
    from aevb.loop import Fitting, Position, epoch_steps

    x = torch.bernoulli(torch.full((100, 16), 0.4), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = aevb.VAE(aevb.ModelConfig(data_shape=(16,), latent_dim=2, hidden=(8,)))
    g = torch.Generator().manual_seed(0)
    by_count = aevb.TrainConfig(batch_size=10, binarize="none", checkpoint_every=3)
    fitting = Fitting.of(model, torch.optim.Adam(model.parameters()), g, by_count)
    ticks = list(epoch_steps(fitting, x, by_count, Position.start(100, g, x.device), step0=1))
    assert [t.done for t in ticks] == list(range(10, 101, 10))
    # steps 2, 5, 8 of the epoch are steps 3, 6, 9 of the run; none at the epoch's end (it has its own)
    assert [i + 1 for i, t in enumerate(ticks) if t.checkpoint] == [2, 5, 8]
    assert all(t.batch_sum is not None and t.batch_sum.shape == () for t in ticks)
    by_clock = aevb.TrainConfig(batch_size=10, binarize="none", checkpoint_minutes=5)
    ticks = list(epoch_steps(fitting, x, by_clock, Position.start(100, g, x.device), deadline=0.0))
    assert [t.checkpoint for t in ticks] == [True] + [False] * 9  # a deadline passed; then the clock restarts
    assert not any(t.checkpoint for t in epoch_steps(fitting, x, by_clock, Position.start(100, g, x.device)))


def test_the_loop_takes_the_anomaly_detectors_former_steps_bit_for_bit():
    """The detector's own loop before it used aevb.loop: plain Adam, one generator, eps drawn after encoding."""
    from aevb.loop import Fitting, run_epoch

    x = torch.randn(70, 5, generator=torch.Generator().manual_seed(1))
    config = aevb.TrainConfig(batch_size=16, binarize="none")
    cfg = aevb.ModelConfig(data_shape=(5,), latent_dim=2, hidden=(8,), likelihood="gaussian-learned")

    def fitted(new: bool) -> dict:
        torch.manual_seed(0)
        model = aevb.VAE(cfg)
        opt, g = torch.optim.Adam(model.parameters(), lr=1e-2), torch.Generator().manual_seed(0)
        fitting = Fitting.of(model, opt, g, config)
        for epoch in (1, 2, 3):
            if new:
                run_epoch(fitting, x, config, epoch=epoch)
                continue
            perm = torch.randperm(x.shape[0], generator=g)
            for i in range(0, x.shape[0], 16):
                loss = -aevb.elbo(model, x[perm[i : i + 16]], 1, "analytic", g).elbo.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return _params(model)

    _assert_same(fitted(True), fitted(False))


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


def test_gaussian_learned_on_frey_face(shared_data):
    ds = aevb.load_dataset("frey-face", shared_data)
    cfg = aevb.ModelConfig(hidden=(200,), latent_dim=5, likelihood="gaussian-learned", logvar_min=-6.0)
    records = []
    model = aevb.train(cfg, aevb.TrainConfig(epochs=15, lr=3e-3), dataset=ds, on_epoch=records.append)
    assert model.config.data_shape == (28, 20)
    # a per-pixel variance is learned: the bound on the [0, 1]-scaled faces becomes positive
    # (a density, not a probability), far above the fixed unit-variance bound of about -560 * 0.92
    assert records[-1]["valid_elbo"] > records[0]["valid_elbo"] + 50
    assert records[-1]["valid_elbo"] > 300
    std = model.decode(model.encode(ds.test).mean).base_dist.scale
    assert std.min() >= np.exp(-3.0) - 1e-6  # the clamp at logvar_min = -6 holds


@pytest.mark.slow
def test_mnist_training_reaches_the_documented_level(shared_data):
    """README, Tests: 784-400-20 ReLU, Adam 1e-3, M=100, 6 epochs (~15 s): test ELBO > -108 nats."""
    ds = aevb.load_dataset("mnist", shared_data)
    x_test = split(ds, "test", "dynamic")
    cfg = aevb.ModelConfig(hidden=(400,), latent_dim=20, activation="relu")
    untrained = elbo_terms(aevb.VAE(aevb.ModelConfig(**{**cfg.__dict__, "data_shape": (28, 28)})), x_test)
    model = aevb.train(cfg, aevb.TrainConfig(dataset="mnist", epochs=6, seed=0), dataset=ds)
    terms = elbo_terms(model, x_test)
    assert untrained.elbo.mean() < -400
    assert terms.elbo.mean() > -108.0
    assert 15 < terms.kl.mean() < 40  # the latent is used (no posterior collapse)
