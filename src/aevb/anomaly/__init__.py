"""Anomaly detection with a VAE: `AnomalyDetector` (scikit-learn conventions) and its scores.

`AnomalyDetector` needs scikit-learn, which is slow to import: it is loaded when first asked for.
"""

from .columns import likelihoods
from .fitting import default_size
from .inputs import InputError
from .scores import SCORES

__all__ = ["AnomalyDetector", "default_size", "InputError", "likelihoods", "SCORES"]


def __getattr__(name: str):
    if name == "AnomalyDetector":
        from .detector import AnomalyDetector

        return AnomalyDetector
    raise AttributeError(f"module 'aevb.anomaly' has no attribute {name!r}")
