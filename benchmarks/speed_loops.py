"""The two training loops that benchmarks/speed.py times against each other on MNIST rows (D = 784):
the PyTorch examples VAE's loop (`Reference`) and aevb's own trainer (`Aevb`), each behind `epoch(x)`
(seconds of one pass) and `test_elbo(x)`."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

import aevb
from aevb import speed
from aevb.evaluate import elbo_terms
from aevb.loop import Fitting, run_epoch
from aevb.optimizers import OPTIMIZERS

D = 784  # MNIST's pixels per image: the networks' input and output rows


class RefVAE(nn.Module):
    """The PyTorch examples VAE's network, hidden/latent sizes and activation as given."""

    def __init__(self, hidden: int, latent: int, act: str):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(D, hidden), nn.Linear(hidden, latent), nn.Linear(hidden, latent)
        self.fc3, self.fc4 = nn.Linear(latent, hidden), nn.Linear(hidden, D)
        self.act = torch.relu if act == "relu" else torch.tanh

    def forward(self, x):
        h = self.act(self.fc1(x))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(self.act(self.fc3(z)))), mu, logvar


def ref_loss(recon, x, mu, logvar):  # the examples' loss: the negative ELBO summed over the batch
    bce = F.binary_cross_entropy(recon, x, reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


class Reference:
    """Model, optimiser and DataLoader of the reference loop; `epoch(x)` trains one pass."""

    def __init__(self, hidden, latent, act, batch, seed=0):
        torch.manual_seed(seed)
        self.model, self.batch = RefVAE(hidden, latent, act), batch
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)

    def epoch(self, x: torch.Tensor) -> float:
        """One pass over x (grey levels, dynamically binarised per batch); returns seconds."""
        self.model.train()
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=self.batch, shuffle=True)
        t = time.perf_counter()
        for (xb,) in loader:
            xb = torch.bernoulli(xb)
            self.opt.zero_grad()
            loss = ref_loss(*self._fwd(xb))
            loss.backward()
            loss.item()
            self.opt.step()
        return time.perf_counter() - t

    def _fwd(self, xb):
        recon, mu, logvar = self.model(xb)
        return recon, xb, mu, logvar

    @torch.no_grad()
    def test_elbo(self, x: torch.Tensor) -> float:
        self.model.eval()
        total = 0.0
        for i in range(0, x.shape[0], 1000):
            xb = x[i : i + 1000]
            total += ref_loss(*self._fwd(xb)).item()
        return -total / x.shape[0]


class Aevb:
    """aevb's model and optimiser as `aevb.train` builds them; `epoch(x)` runs its trainer's loop."""

    def __init__(self, hidden, latent, act, batch, precision="fp32", compile="off", seed=0):
        self.mc = aevb.ModelConfig(data_shape=(D,), latent_dim=latent, hidden=(hidden,), activation=act)
        self.tc = aevb.TrainConfig(
            batch_size=batch, binarize="dynamic", precision=precision, compile=compile, seed=seed
        )
        torch.manual_seed(seed)
        self.model = aevb.VAE(self.mc)
        opt = OPTIMIZERS[self.tc.optimizer]
        self.opt = opt(self.model.parameters(), lr=self.tc.lr, **speed.optimizer_options(opt, torch.device("cpu")))
        self.gen = torch.Generator().manual_seed(seed)
        self.fitting = Fitting.of(self.model, self.opt, self.gen, self.tc)

    def epoch(self, x: torch.Tensor) -> float:
        t = time.perf_counter()
        run_epoch(self.fitting, x, self.tc)
        return time.perf_counter() - t

    def test_elbo(self, x: torch.Tensor) -> float:
        return elbo_terms(self.model, x, seed=0).elbo.mean().item()
