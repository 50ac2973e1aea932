"""Speed options of the trainer: bf16 autocast, torch.compile and fused optimisers.

Each one keeps the results correct (checked against fp32 eager in tests/test_speed.py and in
benchmarks/speed.py) and works on CPU and CUDA alike:
- precision "bf16": the networks' matrix products run in bfloat16 under torch.autocast; every
  density, KL and noise draw stays fp32 (the objectives cast the network outputs up).
- compile "on": the per-example objective (encoder, decoder, log-likelihood, KL; forward and
  backward) is compiled by torch.compile into fused kernels. The noise is drawn outside by the
  trainer, so compiled and eager runs see the same random numbers.
- fused optimisers: Adam, Adagrad and SGD update every parameter in one fused kernel
  (`fused=True`) instead of a dozen passes; always on where torch supports it.
- `bernoulli`: the trainer's dynamic binarisation draw, torch.bernoulli's numbers bit for bit.

Threads: aevb leaves torch's default (one intra-op thread per core), the fastest on a quiet
machine; on a busy one, OMP_NUM_THREADS set to the idle cores avoids OpenMP threads waiting on
preempted partners (docs/benchmarks/speed.md measures both).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.optim.optimizer as _optim_base

AUTOCAST_DTYPES = {"bf16": torch.bfloat16}  # "fp32" is no autocast at all

Objective = Callable[..., torch.Tensor]  # (model, x, config, eps, y=None) -> (B,)


@contextlib.contextmanager
def autocast(device: torch.device | str, precision: str = "fp32") -> Iterator[None]:
    """Inside, the networks' linear layers run in `precision` (fp32: unchanged) on `device`."""
    device_type = torch.device(device).type
    if precision == "fp32":
        yield
        return
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"precision must be fp32 or one of {', '.join(AUTOCAST_DTYPES)}; got {precision!r}")
    with torch.autocast(device_type, dtype=AUTOCAST_DTYPES[precision]):
        yield


@functools.cache
def _compiled(fn: Objective) -> Objective:
    # one compiled wrapper per objective function, so epochs and runs reuse its kernels; static
    # shapes: a run has at most two batch sizes (full and the last partial minibatch)
    return torch.compile(fn, dynamic=False)


def objective(fn: Objective, config: Any) -> Objective:
    """`fn(model, x, config, eps, y=None) -> (B,)` with config.precision and config.compile applied.

    Same signature and, up to float rounding (and bf16 rounding when asked for), the same values.
    """
    precision = getattr(config, "precision", "fp32")
    compiled = getattr(config, "compile", "off") == "on"
    if precision == "fp32" and not compiled:
        return fn
    inner = _compiled(fn) if compiled else fn

    def wrapped(model, x: torch.Tensor, cfg, eps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        with autocast(x.device, precision):
            return inner(model, x, cfg, eps, y)

    return wrapped


def optimizer_options(optimizer: type[torch.optim.Optimizer] | Callable[..., Any], device: torch.device) -> dict:
    """Keyword arguments that make `optimizer` use its fused single-kernel update on `device`."""
    try:
        accepts = "fused" in inspect.signature(optimizer).parameters
    except (TypeError, ValueError):
        return {}
    supported = getattr(_optim_base, "_get_fused_kernels_supported_devices", lambda: ["cuda"])()
    return {"fused": True} if accepts and device.type in supported else {}


def bernoulli(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`torch.bernoulli(p, generator=generator)`, bit for bit and leaving the generator in the same
    state, but faster on a CPU: there torch draws one fp32 uniform u per element, in order, and
    returns u < p, serially; drawing all the uniforms with torch.rand and comparing is the same
    numbers in vectorised passes (tests/test_speed.py checks the identity). Other devices and
    dtypes (which draw differently): torch.bernoulli."""
    if p.device.type != "cpu" or p.dtype != torch.float32:
        return torch.bernoulli(p, generator=generator)
    return torch.rand(p.shape, generator=generator).lt_(p)  # in place: 1.0 where u < p, in p's dtype


def set_threads(threads: int | None) -> int:
    """Use `threads` intra-op threads (None or 0: leave torch's default, one per core); returns the count."""
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
