"""Centring and scaling of the columns whose likelihood is location-scale (`aevb.anomaly.columns.rescaled_mask`),
fitted on the training rows only, then clipping.

"robust" (the default): centre on the median and divide by the interquartile range (scikit-learn's
RobustScaler with its defaults), so that the anomalies among the training rows do not set the scale:
a few extreme values inflate a standard deviation (and so squeeze every normal row towards 0) but not
the IQR. A column whose IQR is 0 (mostly one value) is only centred, as RobustScaler does.
"standard": the mean and the standard deviation (StandardScaler).
The other columns (counts, classes, [0, 1] values) get centre 0 and scale 1 and are not clipped.
"""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import RobustScaler, StandardScaler

SCALINGS = ("robust", "standard")
QUANTILE_RANGE = (25.0, 75.0)

# Rescaled values are clipped to +-CLIP: a value 50 scale units out marks an outlier whatever the
# model says, and unbounded inputs can overflow the encoder's variance in float32 (NaN scores).
CLIP = 50.0


def fit_scaler(a: np.ndarray, kind: str, rescaled: np.ndarray) -> RobustScaler | StandardScaler:
    """The fitted scaler of `kind` for a (n, d); columns where `rescaled` is False are left as they are."""
    if kind == "standard":
        scaler = StandardScaler().fit(a)
        scaler.mean_[~rescaled], scaler.var_[~rescaled] = 0.0, 1.0
    else:
        scaler = RobustScaler(quantile_range=QUANTILE_RANGE).fit(a)  # a zero IQR gets scale 1
        scaler.center_[~rescaled] = 0.0
    scaler.scale_[~rescaled] = 1.0
    return scaler


def transform(scaler: RobustScaler | StandardScaler, a: np.ndarray, rescaled: np.ndarray) -> np.ndarray:
    """a (n, d) centred and scaled by `scaler`, the `rescaled` columns clipped to +-CLIP; a new array."""
    a = scaler.transform(a)
    a[:, rescaled] = np.clip(a[:, rescaled], -CLIP, CLIP)
    return a


def center(scaler: RobustScaler | StandardScaler) -> np.ndarray:
    """The (d,) values subtracted before dividing by `scaler.scale_`."""
    return scaler.mean_ if isinstance(scaler, StandardScaler) else scaler.center_


def rebuild(kind: str, center_: np.ndarray, scale: np.ndarray) -> RobustScaler | StandardScaler:
    """A fitted scaler of `kind` from saved centre and scale (persistence)."""
    d = center_.shape[0]
    if kind == "standard":
        scaler = StandardScaler()
        scaler.mean_, scaler.scale_, scaler.var_ = center_, scale, scale**2
        scaler.n_samples_seen_ = 0
    else:
        scaler = RobustScaler(quantile_range=QUANTILE_RANGE)
        scaler.center_, scaler.scale_ = center_, scale
    scaler.n_features_in_ = d
    return scaler
