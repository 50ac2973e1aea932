"""`MixedLikelihood`: one decoder head per group of consecutive columns (a table of mixed types). The
groups come from `ModelConfig.columns` through `aevb.likelihoods.group_heads`, which reads the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.distributions import Distribution

from .distributions import ColumnGroups
from .heads_shared import log_prob_via_distribution, not_location_scale

if TYPE_CHECKING:
    from .likelihoods import Likelihood


@dataclass(frozen=True)
class MixedLikelihood:
    """One likelihood per group of consecutive columns (`ModelConfig.columns`, e.g. "gaussian-learned:3,
    categorical4:1,poisson:2"): the decoder output is the groups' outputs one after the other, each
    laid out as its head expects, and `decode(z)` is a `ColumnGroups` distribution with event shape (D,).
    Every member is the groups' own, split and joined; it is not location-scale as a whole (the anomaly
    detector rescales the columns of its location-scale groups)."""

    groups: tuple[tuple[Likelihood, int], ...]  # (head, number of columns)
    location_scale = False

    def outputs(self, d: int) -> int:
        if d != sum(n for _, n in self.groups):
            raise ValueError(f"the column groups cover {sum(n for _, n in self.groups)} columns, not {d}")
        return sum(head.outputs(n) for head, n in self.groups)

    def _split(self, h: torch.Tensor) -> list[torch.Tensor]:
        return list(h.split([head.outputs(n) for head, n in self.groups], -1))

    def _columns(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(x.split([n for _, n in self.groups], -1))

    def __call__(self, h: torch.Tensor) -> Distribution:
        return ColumnGroups([head(hg) for (head, _), hg in zip(self.groups, self._split(h))])

    def log_prob(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return log_prob_via_distribution(self, h, x)

    def sample(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The groups' draws, in order from the one generator, concatenated in h's dtype."""
        parts = [head.sample(hg, generator).to(h.dtype) for (head, _), hg in zip(self.groups, self._split(h))]
        return torch.cat(parts, -1)

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """Each group's `encoder_input` (log(1 + x) for counts), the others as they are."""
        return torch.cat([head.encoder_input(xg) for (head, _), xg in zip(self.groups, self._columns(x))], -1)

    def check(self, x: torch.Tensor, first_feature: int = 0) -> str | None:
        """The first group's message whose columns are not all in its support, or None."""
        start = first_feature
        for (head, n), xg in zip(self.groups, self._columns(x)):
            problem = head.check(xg, start)
            if problem is not None:
                return problem
            start += n
        return None

    def rescaled(self, h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> Distribution:
        return not_location_scale(self)
