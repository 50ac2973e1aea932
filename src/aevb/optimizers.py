"""The optimisers `--optimizer` names: name -> torch.optim class, built by the trainer as
cls(parameters, lr=..., weight_decay=...). `aevb.config` checks `TrainConfig.optimizer` against it."""

from __future__ import annotations

from collections.abc import Callable

import torch

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adagrad": torch.optim.Adagrad,
    "sgd": torch.optim.SGD,
}
