"""aevb: Auto-Encoding Variational Bayes (Kingma & Welling, 2013).

import aevb
model = aevb.train(aevb.ModelConfig(latent_dim=2), aevb.TrainConfig(dataset="digits"), "runs/digits")
model = aevb.load("runs/digits")
x = model.sample(16)                                  # (16, 8, 8), E[x|z] for z ~ p(z)
q = model.encode(x)                                   # q(z|x): q.mean, q.stddev
ll = aevb.log_likelihood(model, x, k=5000)            # (16,) nats per example
"""

from .checkpoint import load
from .config import ModelConfig, TrainConfig
from .custom import network_sizes
from .data import Dataset, load_dataset
from .errors import AevbError, CheckpointError, DataError
from .evaluate import bits_per_dim, elbo_terms, log_likelihood, summarize
from .likelihoods import LIKELIHOODS
from .model import VAE
from .objectives import ELBOTerms, elbo, gaussian_kl, iwae, log_weights
from .train import train

__version__ = "0.1.0"


def __getattr__(name: str):
    # AnomalyDetector needs scikit-learn, which takes seconds to import: only when asked for
    if name == "AnomalyDetector":
        from .anomaly import AnomalyDetector

        return AnomalyDetector
    raise AttributeError(f"module 'aevb' has no attribute {name!r}")


__all__ = [
    "VAE",
    "AnomalyDetector",
    "ModelConfig",
    "TrainConfig",
    "Dataset",
    "load_dataset",
    "train",
    "network_sizes",
    "load",
    "elbo",
    "iwae",
    "log_weights",
    "gaussian_kl",
    "ELBOTerms",
    "elbo_terms",
    "log_likelihood",
    "bits_per_dim",
    "summarize",
    "LIKELIHOODS",
    "AevbError",
    "DataError",
    "CheckpointError",
    "__version__",
]
