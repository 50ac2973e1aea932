"""Plain networks. No probability in here: the model turns their outputs into distributions."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATION_MODULES: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


class MLP(nn.Module):
    """in_dim -> hidden... -> out_dim, the activation after every hidden layer, linear output."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int, activation: str = "tanh"):
        super().__init__()
        sizes = (in_dim, *hidden)
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), ACTIVATION_MODULES[activation]()]
        layers.append(nn.Linear(sizes[-1], out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def init_normal_(module: nn.Module, std: float, generator: torch.Generator | None = None) -> None:
    """Every weight and bias ~ N(0, std^2), the paper's initialisation (Section 5, std 0.01)."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std, generator=generator)
