"""A user's own networks for tests/test_custom_networks.py: a small conv encoder and decoder, written
here from torch.nn alone with names of their own, that compute what aevb's in-tree `--arch conv`
computes (aevb.nets.ConvEncoder / ConvDecoder with --channels 4 8 --hidden 32 --activation relu) on
8x8 one-channel images. `build` (the import path `custom_nets:build`) is what `--module` names.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

import aevb

CHANNELS, HIDDEN = (4, 8), 32
IN_TREE = {"arch": "conv", "channels": CHANNELS, "hidden": (HIDDEN,), "activation": "relu"}  # what they replicate


class Encoder(nn.Module):
    """(B, 64) -> (B, out): two stride-2 3x3 convolutions (8x8 -> 4x4 -> 2x2), then a hidden layer."""

    def __init__(self, out: int, hidden: int = HIDDEN):
        super().__init__()
        self.conv1 = nn.Conv2d(1, CHANNELS[0], 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(CHANNELS[0], CHANNELS[1], 3, stride=2, padding=1)
        self.fc = nn.Linear(CHANNELS[1] * 2 * 2, hidden)
        self.out = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv2(F.relu(self.conv1(x.reshape(-1, 1, 8, 8)))))
        return self.out(F.relu(self.fc(h.flatten(1))))


class Decoder(nn.Module):
    """(B, latent) -> (B, 64 * outputs): a hidden layer to a 8x2x2 map, then two stride-2 transposed
    convolutions back to 8x8 (output padding 1: even sizes)."""

    def __init__(self, latent: int, outputs: int = 1, hidden: int = HIDDEN):
        super().__init__()
        self.fc = nn.Linear(latent, hidden)
        self.to_map = nn.Linear(hidden, CHANNELS[1] * 2 * 2)
        self.up1 = nn.ConvTranspose2d(CHANNELS[1], CHANNELS[0], 3, stride=2, padding=1, output_padding=1)
        self.up2 = nn.ConvTranspose2d(CHANNELS[0], outputs, 3, stride=2, padding=1, output_padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.to_map(F.relu(self.fc(z)))).reshape(-1, CHANNELS[1], 2, 2)
        return self.up2(F.relu(self.up1(h))).flatten(1)


class RenamedDecoder(Decoder):
    """The same decoder with its first layer under another name (`dense`, not `fc`)."""

    def __init__(self, latent: int, outputs: int = 1, hidden: int = HIDDEN):
        super().__init__(latent, outputs, hidden)
        self.dense = self.fc
        del self.fc

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.to_map(F.relu(self.dense(z)))).reshape(-1, CHANNELS[1], 2, 2)
        return self.up2(F.relu(self.up1(h))).flatten(1)


def build(config: aevb.ModelConfig) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) for `config` (8x8 images): the sizes come from aevb.network_sizes."""
    sizes = aevb.network_sizes(config)
    return Encoder(sizes.encoder_out), Decoder(sizes.decoder_in, sizes.decoder_out // config.data_dim)


def build_wide(config: aevb.ModelConfig) -> tuple[nn.Module, nn.Module]:
    """The same networks with hidden layers of 48 units, not 32: other shapes, the same names."""
    sizes = aevb.network_sizes(config)
    return Encoder(sizes.encoder_out, 48), Decoder(sizes.decoder_in, sizes.decoder_out // config.data_dim, 48)


def build_renamed(config: aevb.ModelConfig) -> tuple[nn.Module, nn.Module]:
    """The same networks with one parameter under another name (decoder.dense.weight)."""
    sizes = aevb.network_sizes(config)
    return Encoder(sizes.encoder_out), RenamedDecoder(sizes.decoder_in, sizes.decoder_out // config.data_dim)
