"""The training time limit (`--time-limit`): where a run stops, that it resumes bit for bit, and that its
training time adds up over resumes. A fake clock replaces aevb.loop's, so no test waits for real time."""

import dataclasses
import json

import pytest
import torch

import aevb
from aevb import loop
from aevb.rundir import progress, read_metrics
from aevb_process import aevb_main

SMALL = aevb.ModelConfig(hidden=(32,), latent_dim=2)
DT = 0.75  # fake seconds per clock reading: epoch_steps reads it once as an epoch starts and once a step
STEPS = 13  # steps of an epoch of the 1297 digits training rows at batch 100


class FakeTime:
    """Stands in for the `time` module of aevb.loop: perf_counter advances DT at every reading; the
    checkpoint clock (monotonic) stands still, so only the time limit and epoch ends save."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += DT
        return self.now

    def monotonic(self) -> float:
        return 0.0


@pytest.fixture
def fake_clock(monkeypatch):
    monkeypatch.setattr(loop, "time", FakeTime())


def _params(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _limit(steps: float) -> float:
    """The time limit, in minutes, of `steps` steps of the fake clock."""
    return steps * DT / 60


def test_the_epoch_stops_at_the_first_step_past_its_time_and_asks_for_a_checkpoint(fake_clock):
    x = torch.bernoulli(torch.full((100, 16), 0.4), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = aevb.VAE(aevb.ModelConfig(data_shape=(16,), latent_dim=2, hidden=(8,)))
    g = torch.Generator().manual_seed(0)
    config = aevb.TrainConfig(batch_size=10, binarize="none", checkpoint_minutes=0)
    fitting = loop.Fitting.of(model, torch.optim.Adam(model.parameters()), g, config)
    position = loop.Position.start(100, g, x.device)
    ticks = list(loop.epoch_steps(fitting, x, config, position, stop_after=3.5 * DT))
    # step j ends j * DT seconds into the epoch: the 4th is the first at or past 3.5 DT, and the last taken
    assert [t.done for t in ticks] == [10, 20, 30, 40]
    assert [t.stop for t in ticks] == [False, False, False, True] and ticks[-1].checkpoint
    assert (position.done, position.steps, position.seconds) == (40, 4, 4 * DT)
    # a limit met by the epoch's last step stops it there; its end has its own checkpoint
    ticks = list(loop.epoch_steps(fitting, x, config, loop.Position.start(100, g, x.device), stop_after=10 * DT))
    assert len(ticks) == 10 and ticks[-1].stop and not ticks[-1].checkpoint
    assert loop.stop_seconds(config, 12.0) is None
    assert loop.stop_seconds(dataclasses.replace(config, time_limit=0.5), 12.0) == 18.0


def test_stopping_by_time_and_resuming_ends_bit_for_bit_with_an_uninterrupted_run(tmp_path, digits, fake_clock):
    cfg = aevb.TrainConfig(epochs=4, seed=3)
    whole = aevb.train(SMALL, cfg, tmp_path / "whole", dataset=digits)
    run = tmp_path / "part"

    stopped = aevb.train(SMALL, dataclasses.replace(cfg, time_limit=_limit(20.5)), run, dataset=digits)
    done = progress(run)  # 21 steps: 8 into the second epoch
    assert (done["step"], done["epoch"], done["inside_epoch"]) == (21, 1, True)
    assert done["seconds"] == 21 * DT and done["where"] == "step 21, inside epoch 2"
    assert done["epochs"] == pytest.approx(1 + 800 / 1297)
    assert _same(_params(stopped), _params(aevb.load(run)))  # `load` gives the weights it stopped with
    assert [r["epoch"] for r in read_metrics(run)] == [1]

    # a limit met by an epoch's last step: the epoch ends as usual (metrics, checkpoint) and the run stops
    aevb.train(None, dataclasses.replace(cfg, time_limit=_limit(25.5)), run, dataset=digits, resume=True)
    done = progress(run)
    assert (done["step"], done["epoch"], done["inside_epoch"], done["seconds"]) == (26, 2, False, 26 * DT)
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    assert json.loads((run / "config.json").read_text())["train"]["time_limit"] == _limit(25.5)

    # resumed at or past its limit: not a step is taken, nothing is written
    before = (run / "checkpoint.safetensors").read_bytes()
    again = aevb.train(None, dataclasses.replace(cfg, time_limit=_limit(20.5)), run, dataset=digits, resume=True)
    assert (run / "checkpoint.safetensors").read_bytes() == before and progress(run)["step"] == 26
    assert _same(_params(again), _params(aevb.load(run)))

    # the time counts over all resumes: 40 steps in all, not 40 more
    aevb.train(None, dataclasses.replace(cfg, time_limit=_limit(39.5)), run, dataset=digits, resume=True)
    done = progress(run)
    assert (done["step"], done["epoch"], done["inside_epoch"], done["seconds"]) == (40, 3, True, 40 * DT)

    resumed = aevb.train(None, cfg, run, dataset=digits, resume=True)  # no limit: to the last epoch
    assert progress(run)["step"] == 4 * STEPS and progress(run)["seconds"] == 4 * STEPS * DT
    assert _same(_params(whole), _params(resumed))
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2, 3, 4]
    assert [r["seconds"] for r in read_metrics(run)] == [k * STEPS * DT for k in (1, 2, 3, 4)]
    for a, b in zip(read_metrics(tmp_path / "whole"), read_metrics(run)):
        assert a["valid_elbo"] == b["valid_elbo"] and a["train_elbo"] == b["train_elbo"]


@pytest.mark.slow  # three `aevb train` commands (in this process)
def test_the_cli_stops_with_one_line_saying_how_to_continue(tmp_path):
    run = tmp_path / "r"
    args = ("--dataset", "digits", "--hidden", "8", "--latent-dim", "2", "--no-progress")
    res = aevb_main(tmp_path, ["train", *args, "--epochs", "1000", "--time-limit", "0.001", "--out", str(run)])
    assert res.returncode == 0, res.stderr
    done = progress(run)
    assert 0.06 <= done["seconds"] and done["epoch"] < 1000
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith(f"stopped by --time-limit 0.001: {done['minutes']:.3g} minutes of training, at")
    assert done["where"] in last and f"`aevb train --resume {run} --time-limit 0.002`" in last
    assert "run saved in" not in res.stdout

    res = aevb_main(tmp_path, ["train", "--resume", str(run), "--time-limit", "0.001", "--no-progress"])
    assert res.returncode == 0 and res.stdout.strip().splitlines()[-1] == last  # nothing more to train
    assert progress(run) == done

    epochs = str(done["epoch"] + 1)  # no limit: the run ends with its epochs
    res = aevb_main(tmp_path, ["train", "--resume", str(run), "--epochs", epochs, "--time-limit", "0", "--no-progress"])
    assert res.returncode == 0 and res.stdout.strip().splitlines()[-1] == f"run saved in {run}"
    assert progress(run)["epoch"] == done["epoch"] + 1 and not progress(run)["inside_epoch"]


def _main(capsys, *args: str) -> tuple[int, list[str]]:
    """`aevb ARGS` in this process: the exit status and the lines of stderr."""
    from aevb.cli import main

    try:
        rc = main(list(args))
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    return rc, capsys.readouterr().err.strip().splitlines()


def test_bad_time_limits_are_one_line_errors(tmp_path, capsys):
    aevb.train(SMALL, aevb.TrainConfig(epochs=1), tmp_path / "r", dataset=aevb.load_dataset("digits"))
    for value in ("-1", "nan", "inf", "-0.5", "soon"):
        rc, lines = _main(capsys, "train", "--epochs", "1", "--time-limit", value, "--out", str(tmp_path / "new"))
        assert rc != 0 and not (tmp_path / "new").exists()
        assert len(lines) == 1 and lines[0].startswith("aevb: error:") and "time" in lines[0], lines
        rc, lines = _main(capsys, "train", "--resume", str(tmp_path / "r"), "--time-limit", value)
        assert rc != 0 and len(lines) == 1 and lines[0].startswith("aevb: error:") and "time" in lines[0], lines
        with pytest.raises(ValueError, match="time_limit"):
            aevb.TrainConfig(time_limit=value if value == "soon" else float(value))
    assert progress(tmp_path / "r")["epoch"] == 1
