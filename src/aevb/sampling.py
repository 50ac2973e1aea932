"""Better samples after training: the aggregate posterior, latent interpolation and traversals.

- Aggregate posterior (Bauer & Mnih 2019 and many since): a VAE's decoder is trained on codes from
  q(z) = 1/N sum_n q(z|x_n), which rarely fills N(0, I); sampling z from a Gaussian mixture fitted on
  the training posterior means stays where the decoder has been trained. The fit is scikit-learn's
  GaussianMixture; its parameters are stored as safetensors (never pickle) and drawn from here.
- `interpolate`: decoded points on the straight line between two inputs' posterior means.
- `traverse`: decoded points moving one latent dimension at a time from a base code.
Every function returns tensors (decoded means E[x|z] by default); randomness goes through a Generator.
A conditional VAE's functions take labels y: inputs are encoded with theirs, codes decoded with the given ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import CheckpointError
from .evaluate import evaluating
from .files import atomic_write
from .model import VAE

AGGREGATE = "aggregate-{k}.safetensors"  # in the run directory, one per number of components


@dataclass(frozen=True)
class GaussianMixture:
    """sum_k weights_k N(means_k, covariances_k), full covariances; float64 tensors (K,), (K, Dz), (K, Dz, Dz)."""

    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n draws, (n, Dz) float32: a component by its weight, then mean + L eps with L L^T = covariance."""
        idx = torch.multinomial(self.weights.float(), n, replacement=True, generator=generator)
        chol = torch.linalg.cholesky(self.covariances)  # (K, Dz, Dz)
        eps = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        return (self.means[idx] + (chol[idx] @ eps.unsqueeze(-1)).squeeze(-1)).float()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log density at z (n, Dz), (n,) nats."""
        from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

        mix = MixtureSameFamily(Categorical(probs=self.weights), MultivariateNormal(self.means, self.covariances))
        return mix.log_prob(z.double())

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        tensors = {"weights": self.weights, "means": self.means, "covariances": self.covariances}
        tensors = {k: v.double().contiguous() for k, v in tensors.items()}
        atomic_write(path, lambda p: save_file(tensors, str(p), metadata={"format": "aevb-aggregate-gmm"}))

    @classmethod
    def load(cls, path: str | Path) -> GaussianMixture:
        """The mixture saved by `save`; CheckpointError if missing, corrupt or inconsistent."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            t = load_file(str(path))
            w, m, c = t["weights"], t["means"], t["covariances"]
        except (FileNotFoundError, SafetensorError, OSError, KeyError, RuntimeError) as e:
            raise CheckpointError(f"{path} is missing or corrupt ({str(e).splitlines()[0][:100]})") from None
        k, d = m.shape if m.dim() == 2 else (0, 0)
        ok = w.shape == (k,) and c.shape == (k, d, d) and k >= 1 and all(torch.isfinite(v).all() for v in (w, m, c))
        if not ok:
            raise CheckpointError(f"{path}: the mixture's tensors do not fit together")
        return cls(w, m, c)


def posterior_means(model: VAE, x: torch.Tensor, batch_size: int = 1000, y: torch.Tensor | None = None) -> torch.Tensor:
    """E_q(z|x)[z] (E_q(z|x, y)[z] with labels y (N,)) of every row of x, (N, Dz)."""
    with evaluating(model):
        return torch.cat(
            [
                model.encode(x[i : i + batch_size], None if y is None else y[i : i + batch_size]).mean
                for i in range(0, x.shape[0], batch_size)
            ]
        )


def fit_aggregate(
    model: VAE, x: torch.Tensor, components: int = 10, seed: int = 0, y: torch.Tensor | None = None
) -> GaussianMixture:
    """A Gaussian mixture (full covariances, scikit-learn EM, k-means start) fitted on the posterior
    means of x (with their labels y for a conditional model): an estimate of the aggregate posterior
    q(z) to sample codes from."""
    from sklearn.mixture import GaussianMixture as SkGMM

    mu = posterior_means(model, x, y=y).double().numpy()
    k = min(components, mu.shape[0])
    gm = SkGMM(k, covariance_type="full", reg_covar=1e-6, random_state=seed).fit(mu)
    return GaussianMixture(
        *(torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in (gm.weights_, gm.means_, gm.covariances_))
    )


@torch.no_grad()
def decode_mean(model: VAE, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """E[x|z] (E[x|z, y] with labels y (n,)) for codes z (n, Dz), shaped (n, *data_shape)."""
    with evaluating(model):
        return model.decode(z, y).mean.reshape(z.shape[0], *model.config.data_shape)


def interpolate(
    model: VAE, x_from: torch.Tensor, x_to: torch.Tensor, steps: int = 10, y: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, x): `steps` codes on the straight line between the posterior means of two inputs, ends
    included, (steps, Dz), and their decoded means (steps, *data_shape). A conditional model takes
    the inputs' labels y (2,): each code is decoded with the label of the nearer end."""
    mu = posterior_means(model, torch.stack([x_from, x_to]), y=y)
    t = torch.linspace(0, 1, steps).unsqueeze(1)
    z = (1 - t) * mu[0] + t * mu[1]
    labels = None if y is None else y[(t.squeeze(1) > 0.5).long()]
    return z, decode_mean(model, z, labels)


def traverse(
    model: VAE, base: torch.Tensor, dims: list[int], values: torch.Tensor, label: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, x): for each dimension j in `dims` and each value v, the code `base` with z_j = v;
    z (len(dims), len(values), Dz), x (len(dims), len(values), *data_shape), decoded with the class
    `label` for a conditional model."""
    z = base.expand(len(dims), len(values), base.shape[-1]).clone()
    for r, j in enumerate(dims):
        z[r, :, j] = values
    flat = z.reshape(-1, z.shape[-1])
    y = None if label is None else torch.full((flat.shape[0],), label, dtype=torch.int64)
    x = decode_mean(model, flat, y)
    return z, x.reshape(len(dims), len(values), *model.config.data_shape)


@torch.no_grad()
def decode(
    model: VAE,
    z: torch.Tensor,
    generator: torch.Generator | None = None,
    mean: bool = True,
    y: torch.Tensor | None = None,
) -> torch.Tensor:
    """E[x|z] (mean=True) or a draw x ~ p(x|z) for codes z (n, Dz), shaped (n, *data_shape); a
    conditional model decodes with the labels y (n,)."""
    if mean:
        return decode_mean(model, z, y)
    with evaluating(model):
        return model.draw(z, y, generator).reshape(z.shape[0], *model.config.data_shape)


def aggregate_for_run(
    run_dir: str | Path, model: VAE, train_cfg, components: int = 10, data_dir=None
) -> GaussianMixture:
    """The aggregate-posterior mixture of a run: read from RUN/aggregate-K.safetensors when it is newer
    than the model, else fitted on the posterior means of the training split (binarised as the run
    evaluates it) and stored there."""
    from .checkpoint import MODEL
    from .preprocess import check_labels, run_data

    run_dir = Path(run_dir)
    path = run_dir / AGGREGATE.format(k=components)
    if path.exists() and path.stat().st_mtime >= (run_dir / MODEL).stat().st_mtime:
        gmm = GaussianMixture.load(path)
        if gmm.means.shape[1] == model.config.latent_dim:
            return gmm
    x, y, source = run_data(model.config, train_cfg.binarize, train_cfg.dataset, "train", None, data_dir)
    gmm = fit_aggregate(model, x, components, y=check_labels(y, x.shape[0], model.config, source))
    gmm.save(path)
    return gmm
