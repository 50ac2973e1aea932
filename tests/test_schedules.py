"""Learning-rate schedules (aevb.schedules) against their formulas, the rates the optimiser really steps
with, Adam's settable betas and epsilon, and a resume inside a scheduled run bit for bit."""

import inspect
import json
import math
import time
from types import SimpleNamespace

import pytest
import torch

import aevb
from aevb import distributed, loop
from aevb.checkpoint import CHECKPOINT, read_tensors
from aevb.config import TrainConfig
from aevb.loop import Fitting, Position, epoch_steps
from aevb.rundir import read_metrics
from aevb.schedules import lr_at

SMALL = aevb.ModelConfig(hidden=(16,), latent_dim=2)


def test_burda_schedule_is_3_to_the_i_epochs_at_lr_times_10_to_the_minus_i_over_7():
    cfg = TrainConfig(lr=3e-3, lr_schedule="burda")
    expected = [3e-3 * 10 ** (-i / 7) for i in range(8) for _ in range(3**i)]  # Burda et al. 2016, Section 5
    assert len(expected) == 3280
    got = [lr_at(cfg, epoch, 0, 1000) for epoch in range(1, 3281)]
    assert got == expected
    assert [lr_at(cfg, epoch, 999, 1000) for epoch in range(1, 3281)] == expected  # whole epochs
    assert lr_at(cfg, 5000, 0, 1000) == expected[-1] == pytest.approx(3e-4)  # past 3,280: the last stage
    assert [e for e in range(2, 3281) if got[e - 1] != got[e - 2]] == [2, 5, 14, 41, 122, 365, 1094]


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_decays_reach_lr_final_at_the_last_epoch(schedule):
    cfg = TrainConfig(lr=1e-3, lr_final=1e-5, lr_schedule=schedule, epochs=10)
    for epoch, done in [(1, 0), (3, 250), (6, 999), (10, 500)]:
        t = (epoch - 1 + done / 1000) / 10
        shape = 0.5 * (1 + math.cos(math.pi * t)) if schedule == "cosine" else 1 - t
        assert lr_at(cfg, epoch, done, 1000) == pytest.approx(1e-5 + (1e-3 - 1e-5) * shape, rel=1e-12)
    assert lr_at(cfg, 1, 0, 1000) == pytest.approx(1e-3, rel=1e-12)
    assert lr_at(cfg, 11, 0, 1000) == pytest.approx(1e-5, rel=1e-12)  # done with the decay


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_a_decay_over_minutes_follows_the_training_clock_not_the_epochs(schedule):
    cfg = TrainConfig(lr=1e-3, lr_final=1e-5, lr_schedule=schedule, epochs=10, lr_minutes=2.0)
    for seconds in (0.0, 30.0, 60.0, 119.0, 120.0, 500.0):
        t = min(1.0, seconds / 120.0)
        shape = 0.5 * (1 + math.cos(math.pi * t)) if schedule == "cosine" else 1 - t
        for epoch, done in [(1, 0), (9, 999), (40, 3)]:  # wherever the epochs stand
            assert lr_at(cfg, epoch, done, 1000, seconds) == pytest.approx(1e-5 + (1e-3 - 1e-5) * shape, rel=1e-12)


def _recording_rates(x: torch.Tensor, cfg: TrainConfig) -> tuple[Fitting, list[float]]:
    """A small VAE's Fitting for rows x, and the list that gets the learning rate of each optimiser step."""
    model = aevb.VAE(aevb.ModelConfig(data_shape=(x.shape[1],), hidden=(8,)))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    seen: list[float] = []
    original = opt.step

    def step(*a, **kw):
        seen.append(opt.param_groups[0]["lr"])
        return original(*a, **kw)

    opt.step = step
    return Fitting.of(model, opt, torch.Generator().manual_seed(0), cfg), seen


def _fake_clock():
    """time.perf_counter for aevb.loop that moves on by one second at every reading."""
    now = iter(range(100, 10**6))
    return SimpleNamespace(perf_counter=lambda: float(next(now)), monotonic=time.monotonic)


def test_steps_over_minutes_run_at_the_rate_of_the_runs_training_seconds(digits, monkeypatch):
    # the loop reads the clock once at the epoch's start and once after each step: step j of an epoch that
    # starts 2 s into the run (seconds0) runs at the rate of 2 + j seconds, the decay over 6 s (0.1 minute)
    x = digits.train[:300].reshape(300, -1)
    cfg = TrainConfig(lr=1e-2, lr_schedule="cosine", lr_final=1e-3, lr_minutes=0.1, epochs=1, batch_size=64)
    monkeypatch.setattr(loop, "time", _fake_clock())
    fit, seen = _recording_rates(x, cfg)
    pos = Position.start(300, fit.generator, x.device)
    list(epoch_steps(fit, x, cfg, pos, seconds0=2.0))
    cosine = lambda s: 1e-3 + (1e-2 - 1e-3) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / 6.0)))  # noqa: E731
    assert seen == pytest.approx([cosine(2.0 + j) for j in range(5)], rel=1e-12)
    assert seen[-1] == pytest.approx(1e-3 + (1e-2 - 1e-3) * 0.5 * (1 + math.cos(math.pi * 1.0)))  # floor at 6 s
    assert pos.seconds == 5.0


def test_the_ranks_agree_on_the_clock_of_the_decay(monkeypatch):
    # two ranks whose clocks read 3 s and 5 s both step on from 4 s: the same rate on every rank
    monkeypatch.setattr(distributed, "all_sum", lambda t: t + torch.tensor([2.0, 0.0, 0.0, 0.0, 5.0], dtype=t.dtype))
    ctx = distributed.Context(rank=0, world_size=2)
    total, bad, due, over, seconds = loop._agree(torch.tensor(1.5), None, False, False, 3.0, ctx)
    assert (float(total), bad, due, over, seconds) == (3.5, None, False, False, 4.0)


def test_a_run_decaying_over_minutes_ends_at_lr_final_once_its_minutes_are_trained(tmp_path, digits):
    cfg = TrainConfig(epochs=3, lr_schedule="cosine", lr=1e-2, lr_final=2e-4, lr_minutes=1e-4, seed=1)
    aevb.train(SMALL, cfg, tmp_path / "r", dataset=digits)
    records = read_metrics(tmp_path / "r")
    assert records[0]["seconds"] > 60 * 1e-4  # the 6 ms of the decay are over within the first epoch
    assert [r["lr"] for r in records[1:]] == [2e-4, 2e-4]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["lr_minutes"] == 1e-4


def test_constant_schedule_never_touches_the_optimiser():
    assert lr_at(TrainConfig(lr=0.02), 7, 3, 10) == 0.02


def test_every_step_runs_at_the_scheduled_rate(digits):
    # the learning rate the optimiser holds while each step is taken is the schedule's at that step's start
    x = digits.train[:300].reshape(300, -1)
    cfg = TrainConfig(lr=1e-2, lr_schedule="linear", lr_final=1e-3, epochs=2, batch_size=64)
    fit, seen = _recording_rates(x, cfg)
    for epoch in (1, 2):
        pos = Position.start(300, fit.generator, x.device)
        list(epoch_steps(fit, x, cfg, pos, epoch=epoch))
    starts = [(e, i) for e in (1, 2) for i in range(0, 300, 64)]
    assert seen == [lr_at(cfg, e, i, 300) for e, i in starts]
    assert seen[0] == 1e-2 and seen[-1] == pytest.approx(1e-2 + (1e-3 - 1e-2) * (1 + 256 / 300) / 2)


def test_the_epoch_records_carry_the_rate(tmp_path, digits):
    cfg = TrainConfig(epochs=5, lr_schedule="burda", seed=1)
    aevb.train(SMALL, cfg, tmp_path / "r", dataset=digits)
    lrs = [r["lr"] for r in read_metrics(tmp_path / "r")]
    assert lrs == [1e-3] + [1e-3 * 10 ** (-1 / 7)] * 3 + [1e-3 * 10 ** (-2 / 7)]


@pytest.mark.parametrize("schedule", [dict(lr_schedule="burda"), dict(lr_schedule="cosine", lr_final=1e-4)])
def test_resume_inside_a_scheduled_epoch_is_bitwise_equal(tmp_path, digits, schedule):
    # digits: 13 steps of 100 per epoch; checkpoints every 4 steps; killed in epoch 3 after its checkpoint
    # at step 36 (position 10 steps in): the stage and the decay carry on from the very step
    cfg = TrainConfig(epochs=5, checkpoint_every=4, seed=2, **schedule)
    whole = aevb.train(SMALL, cfg, tmp_path / "whole", dataset=digits)

    def crash(s):
        if s.epoch == 3 and s.done == 1200:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        aevb.train(SMALL, cfg, tmp_path / "part", dataset=digits, on_step=crash)
    _, meta = read_tensors(tmp_path / "part" / CHECKPOINT)
    assert json.loads(meta["trainer"])["position"]["steps"] == 10
    resumed = aevb.train(None, None, tmp_path / "part", dataset=digits, resume=True)
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(read_metrics(tmp_path / "whole")) == strip(read_metrics(tmp_path / "part"))


def test_adam_betas_and_eps_reach_the_optimiser(tmp_path, digits):
    cfg = TrainConfig(epochs=1, adam_beta1=0.8, adam_beta2=0.99, adam_eps=1e-4)
    aevb.train(SMALL, cfg, tmp_path / "r", dataset=digits)
    _, meta = read_tensors(tmp_path / "r" / CHECKPOINT)
    group = json.loads(meta["optim"])["param_groups"][0]
    assert group["betas"] == [0.8, 0.99] and group["eps"] == 1e-4
    stored = json.loads((tmp_path / "r" / "config.json").read_text())["train"]
    assert (stored["adam_beta1"], stored["adam_beta2"], stored["adam_eps"]) == (0.8, 0.99, 1e-4)


def test_defaults_are_torch_adams_own():
    # the new fields' defaults change nothing: they are torch.optim.Adam's defaults, so a run that does
    # not set them builds the very optimiser it built before they existed
    defaults = inspect.signature(torch.optim.Adam).parameters
    cfg = TrainConfig()
    assert (cfg.adam_beta1, cfg.adam_beta2) == defaults["betas"].default
    assert cfg.adam_eps == defaults["eps"].default


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(lr_schedule="step"), "lr_schedule must be one of constant, burda, cosine, linear"),
        (dict(lr_final=1e-4), "lr_final is the end of --lr-schedule cosine or linear"),
        (dict(lr_schedule="cosine", lr_final=-1.0), "lr_final must be >= 0"),
        (dict(lr_minutes=10.0), "lr_minutes stretches --lr-schedule cosine or linear"),
        (dict(lr_schedule="burda", lr_minutes=10.0), "lr_minutes stretches --lr-schedule cosine or linear"),
        (dict(lr_schedule="cosine", lr_minutes=-1.0), "lr_minutes must be a number of minutes >= 0"),
        (dict(adam_beta2=1.0), r"must be in \[0, 1\)"),
        (dict(adam_eps=0.0), "adam_eps must be > 0"),
        (dict(optimizer="sgd", adam_eps=1e-4), "apply to --optimizer adam"),
    ],
)
def test_bad_schedule_fields_are_config_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields)
