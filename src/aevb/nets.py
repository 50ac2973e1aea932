"""Plain networks. No probability in here: the model turns their outputs into distributions.

Every network maps (..., in_dim) to (..., out_dim) on flattened vectors, whatever the data's shape:
the convolutional ones reshape to images inside, so the model and the objectives never see the
difference. `ARCHS` names the encoder/decoder pair that `--arch` picks.
"""

from __future__ import annotations

from collections.abc import Callable

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


class ResMLP(nn.Module):
    """in_dim -> width, then one residual block h + W2 act(W1 act(h)) per entry of `hidden`, -> out_dim.

    The identity path keeps deep stacks trainable on tabular data; all blocks have the same width.
    """

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int, activation: str = "relu"):
        super().__init__()
        width, act = hidden[0], ACTIVATION_MODULES[activation]
        self.inp = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(act(), nn.Linear(width, width), act(), nn.Linear(width, width)) for _ in hidden
        )
        self.out = nn.Sequential(act(), nn.Linear(width, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


def _image_shape(data_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of an image example: (H, W) is one grey channel."""
    return (1, *data_shape) if len(data_shape) == 2 else tuple(data_shape)  # type: ignore[return-value]


def _halvings(size: int, n: int) -> list[int]:
    """Spatial sizes after each of n stride-2 convolutions (kernel 3, padding 1): ceil(s / 2)."""
    out = [size]
    for _ in range(n):
        out.append((out[-1] + 1) // 2)
    return out


class ConvEncoder(nn.Module):
    """(..., C*H*W + cond) -> (..., out_dim): stride-2 3x3 convolutions (`channels`) of the image, then
    an MLP (`hidden`) of their features and the last `cond` inputs (a conditional VAE's one-hot label)."""

    def __init__(self, data_shape, channels, hidden, out_dim, activation="relu", cond=0):
        super().__init__()
        self.image, self.cond = _image_shape(tuple(data_shape)), cond
        c, h, w = self.image
        act = ACTIVATION_MODULES[activation]
        layers: list[nn.Module] = []
        for a, b in zip((c, *channels[:-1]), channels):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), act()]
        self.conv = nn.Sequential(*layers)
        flat = channels[-1] * _halvings(h, len(channels))[-1] * _halvings(w, len(channels))[-1]
        self.head = MLP(flat + cond, hidden, out_dim, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x.reshape(-1, x.shape[-1])
        image, cond = x[:, : x.shape[1] - self.cond], x[:, x.shape[1] - self.cond :]
        h = self.conv(image.reshape(-1, *self.image)).flatten(1)  # (N, C_last * h * w)
        return self.head(torch.cat([h, cond], -1) if self.cond else h).reshape(*lead, -1)


class ConvDecoder(nn.Module):
    """(..., in_dim) -> (..., outputs_per_dim*C*H*W): an MLP to the smallest feature map, then
    stride-2 transposed convolutions that undo the encoder's sizes exactly (any H, W, odd or even).

    The output is channel-major, [head output 1 of every pixel, head output 2 of every pixel, ...],
    which is the layout the likelihood heads expect for (..., outputs_per_dim * D)."""

    def __init__(self, in_dim, data_shape, channels, hidden, outputs_per_dim=1, activation="relu"):
        super().__init__()
        c, h, w = _image_shape(tuple(data_shape))
        hs, ws = _halvings(h, len(channels)), _halvings(w, len(channels))
        self.start = (channels[-1], hs[-1], ws[-1])
        act = ACTIVATION_MODULES[activation]
        self.head = nn.Sequential(MLP(in_dim, hidden, channels[-1] * hs[-1] * ws[-1], activation), act())
        rev = tuple(reversed(channels))
        outs = (*rev[1:], outputs_per_dim * c)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(rev, outs)):
            target_h, target_w = hs[-2 - i], ws[-2 - i]  # size before the matching encoder convolution
            pad = (1 - target_h % 2, 1 - target_w % 2)  # out = 2 in - 1 + pad: even targets need one more
            layers.append(nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=pad))
            if i < len(rev) - 1:
                layers.append(act())
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        h = self.head(z.reshape(-1, z.shape[-1])).reshape(-1, *self.start)
        return self.deconv(h).reshape(*lead, -1)


# arch -> (config, encoder_out, decoder_out) -> (encoder, decoder); the decoder mirrors the encoder.
# A conditional VAE's networks take `c.classes` more inputs, the one-hot label after x (or after z).
Builder = Callable[..., tuple[nn.Module, nn.Module]]
ARCHS: dict[str, Builder] = {
    "mlp": lambda c, eo, do, opd: (
        MLP(c.data_dim + c.classes, c.hidden, eo, c.activation),
        MLP(c.latent_dim + c.classes, tuple(reversed(c.hidden)), do, c.activation),
    ),
    "resmlp": lambda c, eo, do, opd: (
        ResMLP(c.data_dim + c.classes, c.hidden, eo, c.activation),
        ResMLP(c.latent_dim + c.classes, c.hidden, do, c.activation),
    ),
    "conv": lambda c, eo, do, opd: (
        ConvEncoder(c.data_shape, c.channels, c.hidden, eo, c.activation, cond=c.classes),
        ConvDecoder(c.latent_dim + c.classes, c.data_shape, c.channels, tuple(reversed(c.hidden)), opd, c.activation),
    ),
}


def init_glorot_(module: nn.Module) -> None:
    """Every weight matrix ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)), and every bias 0: the heuristic of
    Glorot & Bengio (2010) that Burda et al. (2016) initialised with."""
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() >= 2:
                nn.init.xavier_uniform_(p)
            else:
                p.zero_()


def init_normal_(module: nn.Module, std: float, generator: torch.Generator | None = None) -> None:
    """Every weight and bias ~ N(0, std^2), the paper's initialisation (Section 5, std 0.01)."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std, generator=generator)
