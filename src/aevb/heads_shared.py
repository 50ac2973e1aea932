"""The helpers the decoder heads share (`aevb.likelihoods` declares the interface they implement): the
fp32 cast of autocast outputs, `log_prob` through the distribution, draws through a generator, the
location-scale rescaling of the Normal and Student-t families, and the support checks' messages.

A head calls the helpers it needs; there is no base class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.distributions import Distribution, Independent, Normal, StudentT

if TYPE_CHECKING:
    from .likelihoods import Likelihood


def fp32(h: torch.Tensor) -> torch.Tensor:
    """h in fp32 when autocast made it fp16/bf16 (densities are computed in fp32), else h itself."""
    return h.float() if h.dtype in (torch.float16, torch.bfloat16) else h


def log_prob_via_distribution(head: Likelihood, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`head(h).log_prob(x)` with h in fp32, (...,) nats: `log_prob` of a head without a fused formula."""
    return head(fp32(h)).log_prob(x)


def sample_normal(p: Independent, generator: torch.Generator | None) -> torch.Tensor:
    """loc + scale * eps, eps ~ N(0, 1) from `generator`: one draw of Independent(Normal), shaped like loc."""
    base = p.base_dist
    return base.loc + base.scale * torch.randn(base.loc.shape, generator=generator, device=base.loc.device)


def sample_student_t(p: Independent, generator: torch.Generator | None) -> torch.Tensor:
    """One draw of Independent(StudentT), shaped like loc. torch draws its chi-square from the global RNG,
    so that RNG is seeded from `generator` inside a fork (the caller's global state is left alone)."""
    base = p.base_dist
    seed = int(torch.randint(2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[] if base.loc.device.type == "cpu" else [base.loc.device]):
        torch.manual_seed(seed)
        return base.sample()


def rescale_normal(p: Independent, shift: torch.Tensor, scale: torch.Tensor) -> Independent:
    """Independent(Normal) of shift + scale * x for x ~ p = Independent(Normal): loc and scale move."""
    base = p.base_dist
    return Independent(Normal(shift + scale * base.loc, scale * base.scale, validate_args=False), 1)


def rescale_student_t(p: Independent, shift: torch.Tensor, scale: torch.Tensor) -> Independent:
    """Independent(StudentT) of shift + scale * x for x ~ p = Independent(StudentT): loc and scale move, df stays."""
    base = p.base_dist
    return Independent(StudentT(base.df, shift + scale * base.loc, scale * base.scale, validate_args=False), 1)


def not_location_scale(head: Likelihood) -> Distribution:
    """What `rescaled` does for a head whose family is not location-scale: raise ValueError."""
    raise ValueError(f"{type(head).__name__} is not a location-scale family: its data cannot be standardised")


def identity(x: torch.Tensor) -> torch.Tensor:
    """`encoder_input` of the heads whose encoder sees x as it is."""
    return x


def support_message(x: torch.Tensor, ok: torch.Tensor, first_feature: int, what: str, need: str) -> str | None:
    """None when `ok` (N, n) is all True, else "has {what}: the first is the value v (row r, feature c);
    {need}" for the columns x (N, n), the first of which is feature `first_feature`; `what` names them
    as {columns} ("values in {columns} that are not counts": "column(s) a..b")."""
    if bool(ok.all()):
        return None
    row, col = (int(i) for i in (~ok).nonzero()[0])
    cols = f"column(s) {first_feature}..{first_feature + x.shape[-1] - 1}"
    where = f"the value {x[row, col].item():g} (row {row}, feature {first_feature + col})"
    return f"has {what.format(columns=cols)}: the first is {where}; {need}"


def check_real(x: torch.Tensor, first_feature: int = 0) -> str | None:
    """The support check of the heads of real values: every value finite."""
    return support_message(
        x,
        torch.isfinite(x),
        first_feature,
        "values in {columns} that are not finite",
        "this likelihood models real numbers",
    )
