"""Minibatch steps: the objectives the trainer can maximise, the one wrapped objective module the
steps call (`Fitting`), where an epoch stands (`Position`, checkpointed), and `epoch_steps`, a
generator that takes the steps of an epoch and only reduces what the objectives return.

The training set lives on the device as one tensor and is indexed with a fresh permutation each
epoch (no per-item Dataset or collate). All randomness of a step (the permutation, dynamic
binarisation, reparameterisation noise) comes from one torch.Generator, so a run resumed from any
position ends with exactly the parameters of an uninterrupted one. `epoch_steps` never saves: it
yields a `Tick` after each step, saying whether a checkpoint is due, and its caller saves
(`aevb.train` runs the epochs, `aevb.rundir` keeps the files, `AnomalyDetector` fits with it too).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torch import nn

from . import distributed, schedules, speed
from .config import TrainConfig
from .errors import CheckpointError, DivergedError
from .model import VAE
from .objectives import OBJECTIVES, Objective, regularised_elbo


def training_objective(config: TrainConfig, kl_weight: torch.Tensor | None = None) -> Objective:
    """OBJECTIVES[config.objective]; with beta, KL warm-up or free bits (`config.regularised`), the
    regularised ELBO whose KL weight is the 0-dim tensor `kl_weight`, which the steps set before
    each one (`kl_weight_at`): a tensor, so that a compiled objective reads the new value each step."""
    if not config.regularised:
        return OBJECTIVES[config.objective]
    if kl_weight is None:
        raise ValueError("a regularised objective needs its kl_weight tensor")
    return lambda m, x, c, eps, y=None: regularised_elbo(
        m, x, kl_weight, c.free_bits, c.samples, c.estimator, eps=eps, y=y
    )


def kl_weight_at(config: TrainConfig, epoch: int, done: int, n: int) -> float:
    """The KL weight of the step that starts after `done` of n examples of epoch `epoch` (1-based):
    beta * min(1, epochs elapsed / kl_warmup), a linear ramp from 0 (Sonderby et al. 2016); beta without warm-up."""
    if config.kl_warmup <= 0:
        return config.beta
    return config.beta * min(1.0, (epoch - 1 + done / n) / config.kl_warmup)


NOISE_SAMPLES: dict[str, Callable[[TrainConfig], int]] = {"elbo": lambda c: c.samples, "iwae": lambda c: c.k}


def objective_module(
    model: VAE, config: TrainConfig, ctx: distributed.Context, kl_weight: torch.Tensor | None = None
) -> nn.Module:
    """The training objective as one module, forward(x, eps, y) -> (B,) nats: `training_objective`
    with config.precision and config.compile applied (`speed.objective`), then, under torch.distributed,
    wrapped in DistributedDataParallel (`distributed.wrap`). The only place the objective is wrapped."""
    return distributed.wrap(model, speed.objective(training_objective(config, kl_weight), config), config, ctx)


@dataclasses.dataclass(frozen=True, eq=False)
class Fitting:
    """What the steps update and draw from: the model, its optimiser and generator, the wrapped
    objective `module` (whose `model` is the one saved) and the KL weight it reads."""

    model: VAE
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    module: nn.Module  # objective_module(model, ...)
    kl_weight: torch.Tensor | None  # 0-dim, set before every step (regularised objectives), else None
    ctx: distributed.Context

    @classmethod
    def of(
        cls,
        model: VAE,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        config: TrainConfig,
        ctx: distributed.Context | None = None,
    ) -> Fitting:
        """The fitting of `model` by `optimizer` on config's objective (one process when `ctx` is None)."""
        ctx = ctx or distributed.Context()
        device = next(model.parameters()).device
        kl_weight = torch.zeros((), device=device) if config.regularised else None
        return cls(model, optimizer, generator, objective_module(model, config, ctx, kl_weight), kl_weight, ctx)


class Step(NamedTuple):
    """What the step hook sees after each optimiser step."""

    epoch: int
    epochs: int
    done: int  # examples of this epoch seen so far
    total: int  # examples per epoch
    batch_sum: torch.Tensor  # sum over the batch of the per-example objective (nats), on the device


StepHook = Callable[[Step], None]
EpochHook = Callable[[dict[str, Any]], None]  # the epoch's metrics record


class Tick(NamedTuple):
    """What `epoch_steps` yields after each minibatch step."""

    done: int  # examples of the epoch processed so far (taken or skipped)
    batch_sum: torch.Tensor | None  # sum over the global batch of the per-example objective (nats); None: skipped
    checkpoint: bool  # a checkpoint inside the epoch is due now (the epoch's end has its own)
    stop: bool = False  # the run's time is up: save (inside the epoch `checkpoint` says so too) and stop


@dataclasses.dataclass
class Position:
    """Where an epoch stands: its order of examples and what has been summed so far."""

    perm: torch.Tensor  # (N,) int64, this epoch's order of the training examples
    total: torch.Tensor  # () sum of the per-example objective over the steps taken (nats)
    done: int = 0  # examples of the epoch processed (taken or skipped)
    steps: int = 0  # minibatches processed
    counted: int = 0  # examples in `total` (skipped steps are not)
    skipped: int = 0  # steps skipped for a non-finite loss or gradient (--nonfinite skip)
    seconds: float = 0.0  # training time spent in this epoch

    COUNTERS = ("done", "steps", "counted", "skipped", "seconds")  # stored as JSON in a checkpoint

    @classmethod
    def start(cls, n: int, generator: torch.Generator, device: torch.device) -> Position:
        """A new epoch of n examples: a permutation drawn from `generator` (its first draw), nothing summed."""
        return cls(perm=torch.randperm(n, generator=generator, device=device), total=torch.zeros((), device=device))

    def counters(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.COUNTERS}

    @classmethod
    def restore(cls, saved: dict[str, Any], n: int, device: torch.device, where: str) -> Position:
        """The position stored in a checkpoint, after checking it fits a training set of n rows."""
        try:
            pos = cls(perm=saved["perm"], total=saved["total"], **{k: saved[k] for k in cls.COUNTERS})
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{where}: the epoch position is incomplete ({e})") from None
        perm_ok = (
            pos.perm.dtype == torch.int64
            and pos.perm.shape == (n,)
            and torch.equal(pos.perm.sort().values, torch.arange(n))
        )
        if not perm_ok:
            raise CheckpointError(f"{where}: the stored epoch order is not a permutation of the {n} training rows")
        if pos.total.shape != () or not pos.total.is_floating_point() or not 0 <= pos.done <= n:
            raise CheckpointError(f"{where}: the stored epoch position does not fit the training data")
        pos.perm, pos.total = pos.perm.to(device), pos.total.to(device)
        return pos


def clock_deadline(config: TrainConfig) -> float | None:
    """The time.monotonic() at which the clock asks for the next checkpoint: config.checkpoint_minutes
    from now; None when that is 0 (off)."""
    minutes = config.checkpoint_minutes
    return time.monotonic() + 60 * minutes if minutes else None


def stop_seconds(config: TrainConfig, seconds: float) -> float | None:
    """The training seconds left to a run that has trained `seconds` before its time limit
    (config.time_limit minutes, over all its resumes; <= 0: the limit is reached); None without a limit."""
    return 60 * config.time_limit - seconds if config.time_limit else None


def _nonfinite(loss: torch.Tensor, params: list[torch.Tensor]) -> str | None:
    """ "loss" or "gradient" when that is NaN/inf, else None (one host sync per step).
    `params`: the model's parameters, listed once per epoch (module.parameters() walks the modules).

    One sum over the loss and every gradient's sum: a NaN or an infinity anywhere makes it NaN or
    infinite (inf - inf is NaN), and a plain sum is the cheapest pass over the gradients (a norm
    squares, and overflows already at entries of 1e19). Only a bad step looks at which it was."""
    grads = [p.grad.sum() for p in params if p.grad is not None]
    if math.isfinite(torch.stack([loss.detach().reshape(()), *grads]).sum().item()):
        return None
    return "loss" if not math.isfinite(loss.item()) else "gradient"


def _minibatch(
    fit: Fitting, x: torch.Tensor, y: torch.Tensor | None, rows: torch.Tensor, config: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The rows' examples (binarised afresh under config.binarize "dynamic"), their labels, and the
    whole minibatch's noise eps (S, B, Dz), drawn in this order from the fitting's generator."""
    xb = x.index_select(0, rows)  # a row gather, not advanced indexing
    yb = None if y is None else y.index_select(0, rows)
    if config.binarize == "dynamic":
        xb = speed.bernoulli(xb, fit.generator)
    shape = (NOISE_SAMPLES[config.objective](config), xb.shape[0], fit.model.noise_dim)
    return xb, yb, torch.randn(shape, generator=fit.generator, device=x.device)


def _loss(
    fit: Fitting, xb: torch.Tensor, eps: torch.Tensor, yb: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The negative objective, per example of the global minibatch (the loss), and the per-example
    objective (B,) nats of this process: under torch.distributed, of its shard of the minibatch."""
    ctx = fit.ctx
    if not ctx.distributed:
        per_example = fit.module(xb, eps, yb)  # (B,)
        return -per_example.mean(), per_example
    mine = distributed.shard(xb.shape[0], ctx)
    per_example = fit.module(xb[mine], eps[:, mine], None if yb is None else yb[mine])  # (B / world,)
    # DDP averages over ranks: this makes it the mean over the global batch
    return -per_example.sum() * (ctx.world_size / xb.shape[0]), per_example


def _agree(
    batch_sum: torch.Tensor, bad: str | None, due: bool, over: bool, seconds: float, ctx: distributed.Context
) -> tuple[torch.Tensor, str | None, bool, bool, float]:
    """The global batch sum, whether any rank saw a non-finite step, a due checkpoint clock or its
    time limit passed, and the ranks' mean training seconds: one small all-reduce, so that every rank
    takes the same decisions (and a schedule over minutes the same rate)."""
    if not ctx.distributed:
        return batch_sum, bad, due, over, seconds
    flags = [float(bad is not None), float(due), float(over), seconds]
    stats = distributed.all_sum(torch.cat([batch_sum.double().reshape(1), torch.tensor(flags, dtype=torch.float64)]))
    if bad is None and stats[1] > 0:
        bad = "loss or gradient (on another rank)"
    mean_seconds = float(stats[4]) / ctx.world_size
    return stats[0].to(batch_sum.dtype), bad, bool(stats[2] > 0), bool(stats[3] > 0), mean_seconds


def _check_skip(fit: Fitting, config: TrainConfig, bad: str, step: int, epoch: int) -> None:
    """Drop a non-finite step before the parameters move (config.nonfinite "skip"), or raise DivergedError."""
    params_bad = not all(torch.isfinite(p).all() for p in fit.model.parameters())
    if config.nonfinite == "stop" or params_bad:  # NaN parameters: skipping cannot help
        what = "parameters" if params_bad else bad
        raise DivergedError(f"training diverged at step {step} of epoch {epoch}: the {what} is NaN or inf", step, what)
    fit.optimizer.zero_grad(set_to_none=True)


def epoch_steps(
    fit: Fitting,
    x: torch.Tensor,
    config: TrainConfig,
    position: Position,
    *,
    epoch: int = 1,
    y: torch.Tensor | None = None,
    step0: int = 0,
    deadline: float | None = None,
    stop_after: float | None = None,
    seconds0: float = 0.0,
) -> Iterator[Tick]:
    """Minibatch steps of config.batch_size from `position` (updated in place) to the end of epoch
    `epoch`, yielding a `Tick` after each one. x (N, ...) the training rows, y (N,) their labels or None.

    Each step's learning rate is `aevb.schedules.lr_at` (config.lr_schedule) of where it starts, and
    of the run's training seconds so far (`seconds0` before this epoch, plus position.seconds as the ranks
    agreed on it after the step before) for a decay over config.lr_minutes.
    A step whose loss or gradient is NaN/inf raises DivergedError before the parameters move, or,
    with config.nonfinite "skip", is dropped and counted in position.skipped. A tick inside the epoch
    says a checkpoint is due every config.checkpoint_every steps of the run (`step0`: its steps before
    this epoch) and once time.monotonic() passes `deadline`, after which the clock restarts
    (`clock_deadline`): the consumer saves before it asks for the next step. Once the epoch's training
    time (position.seconds, read once per step with time.perf_counter) reaches `stop_after` seconds,
    the tick says `stop` (the run's time limit, `stop_seconds`): the consumer saves and asks for no
    more. Under torch.distributed, each rank computes its shard of every minibatch and all agree on
    every decision.
    """
    fit.model.train()
    n = x.shape[0]
    params = list(fit.model.parameters())
    scheduled = config.lr_schedule != "constant"  # constant: the optimiser's own learning rate, untouched
    start = time.perf_counter() - position.seconds
    for i in range(position.done, n, config.batch_size):
        xb, yb, eps = _minibatch(fit, x, y, position.perm[i : i + config.batch_size], config)
        if fit.kl_weight is not None:
            fit.kl_weight.fill_(kl_weight_at(config, epoch, i, n))
        if scheduled:  # of the position (a resumed run steps with the same rates), or of the clock (lr_minutes)
            schedules.set_lr(fit.optimizer, schedules.lr_at(config, epoch, i, n, seconds0 + position.seconds))
        loss, per_example = _loss(fit, xb, eps, yb)
        fit.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        position.seconds = time.perf_counter() - start  # read once a step: the time limit and the metrics agree
        due = deadline is not None and time.monotonic() >= deadline
        over = stop_after is not None and position.seconds >= stop_after
        batch_sum, bad, due, over, position.seconds = _agree(
            per_example.detach().sum(), _nonfinite(loss, params), due, over, position.seconds, fit.ctx
        )
        step = position.steps + 1
        if bad is not None:
            _check_skip(fit, config, bad, step, epoch)
            position.skipped += 1
        else:
            fit.optimizer.step()
            position.total += batch_sum
            position.counted += xb.shape[0]
        position.done, position.steps = min(i + config.batch_size, n), step
        every = config.checkpoint_every
        checkpoint = position.done < n and (due or over or bool(every and (step0 + step) % every == 0))
        yield Tick(position.done, None if bad is not None else batch_sum, checkpoint, over)
        if over:
            return
        if checkpoint and deadline is not None:
            deadline = clock_deadline(config)  # the consumer has just saved


def run_epoch(
    fit: Fitting,
    x: torch.Tensor,
    config: TrainConfig,
    position: Position | None = None,
    *,
    epoch: int = 1,
    y: torch.Tensor | None = None,
) -> Position:
    """All the steps of epoch `epoch` from `position` (None: a new epoch), with no checkpoints; returns
    where the epoch ends (its `total` over the `counted` examples, nats)."""
    if position is None:
        position = Position.start(x.shape[0], fit.generator, x.device)
    for _ in epoch_steps(fit, x, config, position, epoch=epoch, y=y):
        pass
    return position
