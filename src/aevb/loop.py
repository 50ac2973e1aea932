"""One epoch of minibatch steps: the objectives the trainer can maximise, where an epoch stands
(`Position`, checkpointed), and `run_epoch`, which only reduces what the objectives return.

The training set lives on the device as one tensor and is indexed with a fresh permutation each
epoch (no per-item Dataset or collate). All randomness of a step (the permutation, dynamic
binarisation, reparameterisation noise) comes from one torch.Generator, so a run resumed from any
position ends with exactly the parameters of an uninterrupted one. `aevb.train` runs the epochs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from . import distributed, speed
from .config import TrainConfig
from .errors import CheckpointError, DivergedError
from .model import VAE
from .objectives import OBJECTIVES, Objective, regularised_elbo


def training_objective(config: TrainConfig, kl_weight: torch.Tensor | None = None) -> Objective:
    """OBJECTIVES[config.objective]; with beta, KL warm-up or free bits (`config.regularised`), the
    regularised ELBO whose KL weight is the 0-dim tensor `kl_weight`, which the trainer sets before
    each step (`kl_weight_at`): a tensor, so that a compiled objective reads the new value each step."""
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


class Step(NamedTuple):
    """What the step hook sees after each optimiser step."""

    epoch: int
    epochs: int
    done: int  # examples of this epoch seen so far
    total: int  # examples per epoch
    batch_sum: torch.Tensor  # sum over the batch of the per-example objective (nats), on the device


StepHook = Callable[[Step], None]
EpochHook = Callable[[dict[str, Any]], None]  # the epoch's metrics record


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


def run_epoch(
    model: VAE,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    position: Position | None = None,
    *,
    epoch: int = 1,
    on_step: StepHook | None = None,
    step0: int = 0,
    clock_due: Callable[[], bool] | None = None,
    on_checkpoint: Callable[[Position], None] | None = None,
    module: torch.nn.Module | None = None,
    ctx: distributed.Context | None = None,
    kl_weight: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
) -> Position:
    """Minibatch steps of config.batch_size from `position` (a new epoch when None) to the epoch's end.

    A step whose loss or gradient is NaN/inf raises DivergedError before the parameters move, or,
    with config.nonfinite == "skip", is dropped and counted in `skipped`. Between steps,
    `on_checkpoint(position)` runs every config.checkpoint_every steps of the run (counted from
    `step0`) and when `clock_due()` says so. Under torch.distributed (`ctx`, and `module` the
    DDP-wrapped objective), each rank computes its shard of every minibatch. `kl_weight`: the 0-dim
    tensor a given `module` reads its KL weight from (beta, warm-up), set here before every step.
    `y` (N,): the labels of x, for a conditional model (each minibatch takes its rows' labels).
    """
    model.train()
    ctx = ctx or distributed.Context()
    if config.regularised and kl_weight is None:
        if module is not None:
            raise ValueError("a module with a regularised objective needs its kl_weight tensor")
        kl_weight = torch.zeros((), device=x.device)
    # speed.objective: config.precision (bf16 autocast) and config.compile (torch.compile) applied
    module = module or distributed.wrap(
        model, speed.objective(training_objective(config, kl_weight), config), config, ctx
    )
    noise = NOISE_SAMPLES[config.objective](config)
    n, dz = x.shape[0], model.config.latent_dim
    if position is None:
        perm = torch.randperm(n, generator=generator, device=x.device)
        position = Position(perm=perm, total=torch.zeros((), device=x.device))
    params = list(model.parameters())
    start = time.perf_counter() - position.seconds
    for i in range(position.done, n, config.batch_size):
        rows = position.perm[i : i + config.batch_size]
        xb = x.index_select(0, rows)  # a row gather, not advanced indexing
        yb = None if y is None else y.index_select(0, rows)
        if config.binarize == "dynamic":
            xb = speed.bernoulli(xb, generator)
        eps = torch.randn((noise, xb.shape[0], dz), generator=generator, device=x.device)  # the whole minibatch's
        if kl_weight is not None:
            kl_weight.fill_(kl_weight_at(config, epoch, i, n))
        if ctx.distributed:  # this rank's shard of the minibatch
            mine = distributed.shard(xb.shape[0], ctx)
            per_example = module(xb[mine], eps[:, mine], None if yb is None else yb[mine])  # (B / world,)
            # DDP averages over ranks: this makes it the mean over the global batch
            loss = -per_example.sum() * (ctx.world_size / xb.shape[0])
        else:
            per_example = module(xb, eps, yb)  # (B,)
            loss = -per_example.mean()  # the negative bound, per example
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        bad = _nonfinite(loss, params)
        batch_sum = per_example.detach().sum()
        due = clock_due is not None and clock_due()
        if ctx.distributed:  # one small all-reduce: every rank takes the same decisions
            stats = distributed.all_sum(
                torch.stack([batch_sum.double(), torch.tensor(float(bad is not None)), torch.tensor(float(due))])
            )
            batch_sum, due = stats[0].to(batch_sum.dtype), bool(stats[2] > 0)
            if bad is None and stats[1] > 0:
                bad = "loss or gradient (on another rank)"
        step = position.steps + 1
        if bad is not None:
            params_bad = not all(torch.isfinite(p).all() for p in model.parameters())
            if config.nonfinite == "stop" or params_bad:  # NaN parameters: skipping cannot help
                what = "parameters" if params_bad else bad
                raise DivergedError(
                    f"training diverged at step {step} of epoch {epoch}: the {what} is NaN or inf", step, what
                )
            optimizer.zero_grad(set_to_none=True)
            position.skipped += 1
        else:
            optimizer.step()
            position.total += batch_sum
            position.counted += xb.shape[0]
        position.done, position.steps = min(i + config.batch_size, n), step
        position.seconds = time.perf_counter() - start
        if on_step is not None and bad is None:
            on_step(Step(epoch, config.epochs, position.done, n, batch_sum))
        every = config.checkpoint_every
        if on_checkpoint is not None and position.done < n and (due or (every and (step0 + step) % every == 0)):
            on_checkpoint(position)  # the epoch's end has its own checkpoint
    return position
