"""Data parallelism on PyTorch's own engine: torch.distributed + DistributedDataParallel, as started
by `torchrun`. Nothing here moves tensors between processes by itself: DDP all-reduces gradients,
and the few statistics the trainer and `aevb eval` need are all-reduced with torch.distributed.

Semantics (docs/distributed.md): the global minibatch is `--batch-size`, split across the ranks in
contiguous shards; every rank draws the whole minibatch's noise from the same seeded generator and
keeps its shard's part, so a run on N processes follows the single-process run up to float rounding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import math
import os
import sys
from collections.abc import Iterator, Mapping

import torch
import torch.distributed as dist
from torch import nn

from .errors import AevbError

# torchrun sets all of these; a hand-made launch must set the first four (LOCAL_RANK defaults to RANK).
REQUIRED_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
BACKENDS = ("auto", "gloo", "nccl")
DEFAULT_TIMEOUT_S = 120.0  # a collective that waits longer (a rank died or hangs) fails
_broken = False  # a collective failed: the process group must not be touched again
_PEER_FAILURE = ("gloo", "NCCL", "Connection", "Timed out", "timed out", "Socket")


@dataclasses.dataclass(frozen=True)
class Context:
    """Where this process stands: rank r of world_size (0 of 1 without torch.distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current() -> Context:
    """The context of the initialised default process group, else a single process."""
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return Context(dist.get_rank(), dist.get_world_size(), local)
    return Context()


def from_env(env: Mapping[str, str] = os.environ) -> Context | None:
    """The launch described by torchrun's variables; None when there are none (a single process).

    A half-set environment (say RANK without WORLD_SIZE) is an AevbError naming what is missing.
    """
    present = [k for k in (*REQUIRED_ENV, "LOCAL_RANK") if k in env]
    if not present:
        return None
    missing = [k for k in REQUIRED_ENV if k not in env]
    if missing:
        raise AevbError(
            f"torch.distributed environment is half set: {', '.join(present)} given but {', '.join(missing)} "
            "missing; start with torchrun, or unset them all for a single process"
        )
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
        int(env["MASTER_PORT"])
    except ValueError:
        raise AevbError("RANK, WORLD_SIZE, LOCAL_RANK and MASTER_PORT must be whole numbers") from None
    if world < 1 or not 0 <= rank < world:
        raise AevbError(f"RANK={rank} must be in [0, WORLD_SIZE={world})")
    return Context(rank, world, local)


@contextlib.contextmanager
def session(device: str = "auto", backend: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[Context]:
    """Join the process group torchrun describes (if any) for the duration; leave it afterwards.

    backend "auto" is nccl when the run uses CUDA, else gloo. A collective that waits more than
    `timeout_s` (a rank died) raises instead of hanging.
    """
    ctx = from_env()
    if ctx is None or dist.is_initialized():
        yield current()
        return
    if backend not in BACKENDS:
        raise AevbError(f"--dist-backend must be one of {', '.join(BACKENDS)}")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    chosen = ("nccl" if cuda else "gloo") if backend == "auto" else backend
    if chosen == "nccl" and not (torch.cuda.is_available() and dist.is_nccl_available()):
        raise AevbError("--dist-backend nccl needs CUDA; use gloo on CPU")
    if cuda and torch.cuda.is_available():
        torch.cuda.set_device(ctx.local_rank % torch.cuda.device_count())
    try:
        dist.init_process_group(chosen, timeout=datetime.timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as e:
        raise AevbError(f"cannot join the process group ({chosen}): {str(e).splitlines()[0]}") from None
    try:
        yield current()
        # leave together: a rank that tears down its process group while another still uses it
        # (rank 0 writing the last checkpoint) can make gloo abort the process
        gc.collect()  # DDP's reducer of the finished run goes first
        dist.barrier()
    except RuntimeError as e:  # torch.distributed's errors (DistError included) are RuntimeErrors
        if not (isinstance(e, dist.DistError) or any(w in str(e) for w in _PEER_FAILURE)):
            raise
        first = str(e).strip().splitlines()[0][:160]
        global _broken
        _broken = True  # tearing the group down now can abort the process (gloo): see exit_if_broken
        raise AevbError(
            f"rank {ctx.rank}: another process of this run died or stopped answering within {timeout_s:g} s "
            f"({first}); see its own message"
        ) from None
    finally:
        if not _broken:
            dist.destroy_process_group()


def exit_if_broken(status: int) -> None:
    """After a failed collective, leave at once: the broken process group's destructors can abort
    the process (SIGABRT) instead of letting it exit with `status`."""
    if _broken:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def agree(ok: bool, ctx: Context) -> None:
    """Every rank learns whether all ranks got here without an error; raises on the healthy ones if not.

    Call it after a phase that may fail on some ranks only (loading data, opening a run), so that
    no rank waits in a collective for a rank that has already given up.
    """
    if not ctx.distributed:
        return
    flag = torch.tensor([0.0 if ok else 1.0], device=_collective_device())
    dist.all_reduce(flag)
    if ok and flag.item() > 0:
        raise AevbError("another rank failed (its message is above); stopping this one too")


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of `t` over all ranks (t itself on a single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    out = t.to(_collective_device()).clone()
    dist.all_reduce(out)
    return out.to(t.device)


def all_logsumexp(t: torch.Tensor) -> torch.Tensor:
    """log sum_r exp(t_r) elementwise over the ranks, stable for -inf entries."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    m = t.to(_collective_device()).clone()
    dist.all_reduce(m, op=dist.ReduceOp.MAX)
    shift = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    s = all_sum(torch.exp(t.to(m.device) - shift))
    return (shift + torch.log(s)).to(t.device)


def all_gather_rows(t: torch.Tensor, n: int, ctx: Context) -> torch.Tensor:
    """The rows of every rank's shard (see `shard`) concatenated in rank order: (n, ...) on every rank."""
    if not ctx.distributed:
        return t
    size = math.ceil(n / ctx.world_size)
    padded = torch.zeros((size, *t.shape[1:]), dtype=t.dtype, device=_collective_device())
    padded[: t.shape[0]] = t.to(padded.device)
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded)
    rows = [
        p[: s.stop - s.start]
        for p, s in zip(parts, (shard(n, Context(r, ctx.world_size)) for r in range(ctx.world_size)))
    ]
    return torch.cat(rows).to(t.device)


def shard(n: int, ctx: Context) -> slice:
    """This rank's contiguous part of n items: sizes differ by at most one, lower ranks first."""
    base, extra = divmod(n, ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    return slice(start, start + base + (1 if ctx.rank < extra else 0))


class ObjectiveModule(nn.Module):
    """What DDP wraps: forward(x, eps, y) is the per-example objective, (B,) nats (y: labels or None).

    DDP all-reduces the gradients of what its forward computed; the objectives call the model's
    encode/decode, not forward, so this module is the forward they need. Its `model` is what is
    saved: never this wrapper or DDP's (keys stay the VAE's own).
    """

    def __init__(self, model: nn.Module, objective, config):
        super().__init__()
        self.model, self.objective, self.config = model, objective, config

    def forward(self, x: torch.Tensor, eps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.objective(self.model, x, self.config, eps, y)


def wrap(model: nn.Module, objective, config, ctx: Context) -> nn.Module:
    """The objective as a module; under torch.distributed, wrapped in DistributedDataParallel."""
    module = ObjectiveModule(model, objective, config)
    if not ctx.distributed:
        return module
    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def _collective_device() -> torch.device:
    backend = dist.get_backend() if dist.is_initialized() else "gloo"
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def log_likelihood(model: nn.Module, x: torch.Tensor, k: int, ctx: Context, **kw) -> torch.Tensor:
    """`aevb.evaluate.log_likelihood` shared by the ranks, (N,) on every rank: the same numbers as one process.

    With at least as many noise chunks as ranks, each rank takes every world_size-th chunk of every
    example and the partial estimates combine by a logsumexp over ranks; otherwise each rank takes a
    contiguous shard of the examples. Either way example j's noise is the single-process noise.
    """
    from .evaluate import NOISE_CHUNK
    from .evaluate import log_likelihood as single

    if not ctx.distributed:
        return single(model, x, k=k, **kw)
    if math.ceil(k / NOISE_CHUNK) >= ctx.world_size:
        part = single(model, x, k=k, chunks=(ctx.rank, ctx.world_size), **kw)
        return all_logsumexp(part)
    mine = shard(x.shape[0], ctx)
    if kw.get("y") is not None:
        kw["y"] = kw["y"][mine]
    part = single(model, x[mine], k=k, first_index=kw.pop("first_index", 0) + mine.start, **kw)
    return all_gather_rows(part, x.shape[0], ctx)
