"""The torch distributions that torch lacks and the decoder heads (aevb.likelihoods) return."""

from __future__ import annotations

import math

import torch
from torch.distributions import Categorical, Distribution, Normal, constraints


def with_background(
    log_normal: torch.Tensor,
    x: torch.Tensor,
    weight: float,
    loc: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """log[(1 - w) N + w Cauchy(x; loc, scale)] per element, from log N: the contaminated Gaussian's
    density. loc, scale None: the background Cauchy(0, 1)."""
    if loc is None or scale is None:
        log_background = math.log(weight / math.pi) - torch.log1p(x * x)
    else:
        u = (x - loc) / scale
        log_background = math.log(weight / math.pi) - torch.log(scale) - torch.log1p(u * u)
    return torch.logaddexp(log_normal + math.log1p(-weight), log_background)


class ContaminatedNormal(Distribution):
    """Per element, (1 - w) N(loc, scale^2) + w Cauchy(background_loc, background_scale): a Gaussian with
    a fixed heavy-tailed background that explains the values the Gaussian cannot (Huber's
    epsilon-contamination model). The background is Cauchy(0, 1) unless given (a standardised model's
    background in the data's units, Cauchy(shift, scale)).

    The mixture has no mean (the Cauchy has none): `mean` is the Gaussian component's `loc`, the value
    a reconstruction shows. `sample` draws from the mixture.
    """

    arg_constraints: dict = {}
    support = constraints.real

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor,
        weight: float,
        background_loc: torch.Tensor | None = None,
        background_scale: torch.Tensor | None = None,
    ):
        self.loc, self.scale, self.weight = loc, scale, float(weight)
        self.background_loc, self.background_scale = background_loc, background_scale
        super().__init__(loc.shape, validate_args=False)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        log_normal = Normal(self.loc, self.scale, validate_args=False).log_prob(x)
        return with_background(log_normal, x, self.weight, self.background_loc, self.background_scale)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    def sample(
        self, sample_shape: torch.Size | tuple[int, ...] = (), generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draws of shape sample_shape + loc.shape, reproducible through `generator`."""
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.loc.shape
            kw = {"generator": generator, "device": self.loc.device, "dtype": self.loc.dtype}
            clean = self.loc + self.scale * torch.randn(shape, **kw)
            u = torch.rand((2, *shape), **kw)
            background = torch.tan(math.pi * (u[0] - 0.5))  # Cauchy(0, 1) by inversion
            if self.background_loc is not None and self.background_scale is not None:
                background = self.background_loc + self.background_scale * background
            return torch.where(u[1] < self.weight, background, clean)


class CategoricalIndex(Categorical):
    """A categorical over class indices 0..C-1 whose `mean` is the expected index sum_c c p_c (torch's
    Categorical has no mean) and whose `mode` is the most probable class."""

    @property
    def mean(self) -> torch.Tensor:
        c = torch.arange(self.probs.shape[-1], device=self.probs.device, dtype=self.probs.dtype)
        return (self.probs * c).sum(-1)


class ColumnGroups(Distribution):
    """p(x|z) over D columns made of independent groups of consecutive columns, each its own distribution
    with event shape (n_g,): log_prob sums the groups' log-probabilities, mean and sample concatenate."""

    arg_constraints: dict = {}

    def __init__(self, parts: list[Distribution]):
        self.parts = parts
        self.sizes = [p.event_shape[0] for p in parts]
        super().__init__(parts[0].batch_shape, torch.Size([sum(self.sizes)]), validate_args=False)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return sum(p.log_prob(xg) for p, xg in zip(self.parts, x.split(self.sizes, -1)))

    @property
    def mean(self) -> torch.Tensor:
        return torch.cat([p.mean for p in self.parts], -1)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        return torch.cat([p.sample(sample_shape).to(self.parts[0].mean.dtype) for p in self.parts], -1)
