"""Anomaly detection with a VAE: `AnomalyDetector` (scikit-learn conventions) and its scores.

`AnomalyDetector` needs scikit-learn, which is slow to import: it is loaded when first asked for.
"""

from .calibration import conformal_p_values
from .columns import likelihoods
from .complexity import png_code_length
from .fitting import default_size
from .inputs import InputError
from .scores import SCORES

__all__ = [
    "AnomalyDetector",
    "conformal_p_values",
    "default_size",
    "InputError",
    "likelihoods",
    "png_code_length",
    "SCORES",
]


def __getattr__(name: str):
    if name == "AnomalyDetector":
        from .detector import AnomalyDetector

        return AnomalyDetector
    raise AttributeError(f"module 'aevb.anomaly' has no attribute {name!r}")
