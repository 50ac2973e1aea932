"""The one in-memory form every dataset takes: three float32 splits plus optional labels."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset split into train / valid / test, each `(N, *shape)` float32.

    Images are `(H, W)` examples scaled to [0, 1]; tables are `(D,)` examples with their own
    values. Labels, when the source has them, are `(N,)` int64 aligned with the rows.
    """

    name: str  # "mnist", "digits", ... or the user file's path as given
    shape: tuple[int, ...]  # per example: (H, W) for images, (D,) for tables
    train: torch.Tensor = field(repr=False)
    valid: torch.Tensor = field(repr=False)
    test: torch.Tensor = field(repr=False)
    train_labels: torch.Tensor | None = field(default=None, repr=False)
    valid_labels: torch.Tensor | None = field(default=None, repr=False)
    test_labels: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Shapes are fixed here once, so nothing downstream has to re-check them.
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        for split in ("train", "valid", "test"):
            x, y = getattr(self, split), getattr(self, f"{split}_labels")
            if x.dtype != torch.float32 or tuple(x.shape[1:]) != self.shape:
                raise ValueError(
                    f"{self.name}: {split} must be float32 (N, {self.shape}), got {x.dtype} {tuple(x.shape)}"
                )
            if y is not None and (y.dtype != torch.int64 or tuple(y.shape) != (len(x),)):
                raise ValueError(
                    f"{self.name}: {split}_labels must be int64 ({len(x)},), got {y.dtype} {tuple(y.shape)}"
                )

    @property
    def is_image(self) -> bool:
        """True when each example is a 2-D `(H, W)` image."""
        return len(self.shape) == 2

    @property
    def dim(self) -> int:
        """Number of values per example: the product of `shape`."""
        return math.prod(self.shape)

    @property
    def is_binary(self) -> bool:
        """True when every value of train, valid and test is exactly 0 or 1."""
        return all(bool(((x == 0) | (x == 1)).all()) for x in self._splits())

    @property
    def in_unit_interval(self) -> bool:
        """True when every value of train, valid and test lies in [0, 1]."""
        return all(bool(((x >= 0) & (x <= 1)).all()) for x in self._splits())

    def _splits(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.train, self.valid, self.test
