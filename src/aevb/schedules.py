"""Learning-rate schedules `--lr-schedule` names: the learning rate of every step as a pure function of
where the run stands, so that a run resumed mid-epoch takes exactly the steps of an uninterrupted one
(nothing is stored but the config).

A schedule maps (config, t) to the learning rate, t the epochs elapsed before the step, fractional
inside an epoch (t = epoch - 1 + examples done / examples per epoch):

- "constant": config.lr at every step (the default; the optimiser's learning rate is never touched).
- "burda": Burda et al. (2016), Section 5: 3^i epochs at config.lr * 10^(-i/7) for i = 0..7, 3,280
  epochs in all, by whole epochs (stage i starts after sum_{j<i} 3^j epochs); later epochs stay at
  stage 7 (config.lr / 10).
- "cosine": config.lr_final + (config.lr - config.lr_final) (1 + cos(pi t / epochs)) / 2, step by step
  over config.epochs (Loshchilov & Hutter 2017, without restarts): a decay that fits a time budget.
- "linear": config.lr + (config.lr_final - config.lr) t / epochs, step by step.
cosine and linear stretch over config.epochs: a resumed run given more --epochs decays more slowly
from where it stands. Beyond config.epochs they stay at lr_final.

With config.lr_minutes > 0, cosine and linear stretch over that many minutes of training instead (the
run's training seconds s before the step, over all its resumes: progress s / (60 lr_minutes)), so that
the decay ends inside a time budget whatever the machine's speed. The rate then depends on the clock:
such a run, resumed or not, does not repeat another bit for bit (under torch.distributed the ranks agree
on the clock, `aevb.loop`, so they step with the same rate).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # config reads LR_SCHEDULES: this module must not import config when it runs
    from .config import TrainConfig

BURDA_STAGES = 8  # i = 0..7


def burda_stage(epoch: int) -> int:
    """The stage i of 1-based epoch `epoch` in Burda et al.'s schedule: the i with
    sum_{j<i} 3^j < epoch <= sum_{j<=i} 3^j, capped at 7 (epochs past 3,280 stay in the last stage)."""
    i, end = 0, 1
    while epoch > end and i < BURDA_STAGES - 1:
        i += 1
        end += 3**i
    return i


def _burda(c: TrainConfig, t: float, seconds: float) -> float:
    return c.lr * 10 ** (-burda_stage(math.floor(t) + 1) / 7)


def _progress(c: TrainConfig, t: float, seconds: float) -> float:
    """The fraction of the decay elapsed, in [0, 1]: of config.lr_minutes of training when set, else of
    config.epochs."""
    if c.lr_minutes > 0:
        return min(1.0, seconds / (60.0 * c.lr_minutes))
    return min(1.0, t / c.epochs) if c.epochs > 0 else 1.0


def _cosine(c: TrainConfig, t: float, seconds: float) -> float:
    return c.lr_final + (c.lr - c.lr_final) * 0.5 * (1.0 + math.cos(math.pi * _progress(c, t, seconds)))


LR_SCHEDULES: dict[str, Callable[[Any, float, float], float]] = {
    "constant": lambda c, t, seconds: c.lr,
    "burda": _burda,
    "cosine": _cosine,
    "linear": lambda c, t, seconds: c.lr + (c.lr_final - c.lr) * _progress(c, t, seconds),
}


def lr_at(config: TrainConfig, epoch: int, done: int, n: int, seconds: float = 0.0) -> float:
    """The learning rate of the step that starts after `done` of n examples of epoch `epoch` (1-based),
    `seconds` of training into the run (read only with config.lr_minutes)."""
    return LR_SCHEDULES[config.lr_schedule](config, epoch - 1 + done / n, seconds)


def set_lr(optimizer: Any, lr: float) -> None:
    """Every parameter group of `optimizer` steps with learning rate `lr` from now on."""
    for group in optimizer.param_groups:
        group["lr"] = lr
