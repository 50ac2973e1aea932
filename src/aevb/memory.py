"""Allocation failures told in the user's terms: which allocation failed, for what, and how big.

PyTorch reports a failed CPU allocation as a RuntimeError ("DefaultCPUAllocator: can't allocate
memory: you tried to allocate N bytes"), a CUDA one as torch.OutOfMemoryError ("Tried to allocate
2.00 GiB"), NumPy as a MemoryError ("Unable to allocate 29.8 GiB ..."). `failed_allocation` recognises
all three; `allocating` turns them into an `OutOfMemory` (an AevbError: one line, exit 1).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator

import torch

from .errors import OutOfMemory

_BYTES = re.compile(r"allocate (\d+) bytes")
_SIZED = re.compile(r"[Aa]llocate (\d+(?:\.\d*)? [KMGTP]?i?B)")
_MARKERS = ("can't allocate memory", "out of memory", "cannot allocate memory")


def size(n: float) -> str:
    """n bytes as a short human-readable size, in binary units ("23.8 GiB")."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def failed_allocation(e: BaseException) -> str | None:
    """How much the failed allocation asked for ("23.8 GiB (25600000000 bytes)", or "an unknown amount")
    when `e` is an allocation failure; None for any other exception."""
    oom_types = (torch.cuda.OutOfMemoryError, MemoryError)  # torch.OutOfMemoryError is the CUDA one
    text = str(e)
    if not isinstance(e, oom_types) and not (isinstance(e, RuntimeError) and any(m in text.lower() for m in _MARKERS)):
        return None
    if m := _BYTES.search(text):
        return f"{size(int(m.group(1)))} ({int(m.group(1))} bytes)"
    if m := _SIZED.search(text):
        return m.group(1)
    return "an unknown amount"


def parameter_count(build) -> int | None:
    """The number of parameters of the module `build()` returns, built on the meta device (no memory
    is allocated); None when the module cannot be built there."""
    try:
        with torch.device("meta"):
            module = build()
        return sum(p.numel() for p in module.parameters())
    except Exception:  # a module that needs real tensors to build: the count is only a courtesy
        return None


def out_of_memory(what: str, amount: str, advice: str = "") -> OutOfMemory:
    """The one-line error for an allocation of `amount` that failed while `what`."""
    return OutOfMemory(f"out of memory while {what}: could not allocate {amount}" + (f"; {advice}" if advice else ""))


Text = str | Callable[[], str]  # a message part, or a function asked for it only when an allocation fails


@contextlib.contextmanager
def allocating(what: Text, advice: Text = "") -> Iterator[None]:
    """Inside the block, an allocation failure becomes OutOfMemory naming `what`, the amount and `advice`."""
    try:
        yield
    except (RuntimeError, MemoryError) as e:
        amount = failed_allocation(e)
        if amount is None:
            raise
        what, advice = (t if isinstance(t, str) else t() for t in (what, advice))
        raise out_of_memory(what, amount, advice) from None
