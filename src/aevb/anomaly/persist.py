"""A fitted detector on disk: a folder with `detector.json` and `detector.safetensors`. Never pickle.

- detector.safetensors  the VAE's weights (`model.*`), the background VAE's (`background.*`, score
                        "likelihood-ratio" only), the scaler (`scaler.mean`: the centre, the mean or the
                        median; `scaler.scale`) and the sorted training scores (`calibration.scores`,
                        float64, what `p_values` ranks against), and for the scores fitted with them
                        the training rows' posterior means (`latent.reference`, float32, the latent
                        scores and "combined"), their k-distances and local densities (`latent.density`,
                        float64 (2, n), "latent-lof" and "combined"), the Gaussian mixture fitted to them
                        (`latent.mixture`, float64 (K, 1 + Dz + Dz^2) as `mixture` packs it, "latent-gmm" and
                        "combined") and the combined score's medians and interquartile ranges
                        (`combined.standardisation`, float64 (2, 5))
- detector.json         format and version, the estimator's parameters, the model config (and the
                        background's), the fitted scalars (offset_, n_features_in_, feature names, score,
                        image shape, size, the scaler's kind, the likelihood and refits "auto" resolved to)
                        and the SHA-256 of the weights file, so that
                        a pair of files that do not belong together is refused
Both files are written atomically, the weights first: the JSON, written last, commits the pair.
Older versions are read too. Version 1 (before robust scaling and the count/class likelihoods): its scaler
is "standard". Versions 1 and 2 (before the complexity and likelihood-ratio scores): the parameter `seed`
is read as `random_state`, the rows are a table (image_shape_ None), and there are no calibration scores
(`calibration_scores_` None: `p_values` asks for a refit). A record without `refits` (saved before the
concentration steps) loads with refits=0, as it was fitted. Versions 1 to 3 (before likelihood and refits
"auto"): their parameters are the values fitted with, so `likelihood_` and `refits_` are read from them.
Versions 1 to 4 (before the complexity score's weight): they load with complexity_weight=1, the weight they
scored "complexity" with, so that they score as they did. Versions 1 to 5 (before the "latent-knn" and "combined"
scores) hold no latent reference and no standardisation, which their scores do not need. Version 6 (before the
latent local outlier factor): a "combined" detector has a standardisation of three parts, and scores with those
three (`LEGACY_PARTS`); its latent density, which they do not use, is computed from its reference when loaded, so
that it scores "latent-lof" as a version-7 detector does. Version 7 (before the latent mixture): a "combined"
detector has no mixture and a standardisation of four parts, and scores with those four.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from ..checkpoint import load_weights, read_json, read_tensors
from ..config import from_dict, to_dict
from ..errors import AevbError, CheckpointError
from ..files import atomic_write, atomic_write_text
from ..model import VAE
from .combined import PARTS
from .combined import needs as combined_needs
from .latent import local_density
from .mixture import dimension, unpack
from .scaling import SCALINGS, center, rebuild
from .scores import FITTED, NEEDS, SCORES

FORMAT, VERSION = "aevb-anomaly-detector", 8
JSON_NAME, WEIGHTS_NAME = "detector.json", "detector.safetensors"
FITTED_TENSORS = {
    "reference": "latent.reference",
    "density": "latent.density",
    "mixture": "latent.mixture",
    "standardised": "combined.standardisation",
}
"""The tensor each extra fitted with a score (`scores.FITTED`, bar the background VAE) is saved as."""
LEGACY_PARTS = {6: 3, 7: 4}
"""The parts of a "combined" detector saved by each persistence version before the current one's len(PARTS)."""


def save(det, folder: Path) -> Path:
    """Write det (fitted) into `folder` (created if missing); returns the folder."""
    if not hasattr(det, "model_"):
        raise AevbError("cannot save an AnomalyDetector that is not fitted; call fit(X) first")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AevbError(f"cannot create {folder}: {e.strerror or e}") from None
    tensors = _prefixed("model.", det.model_)
    background = getattr(det, "background_", None)
    if background is not None:
        tensors.update(_prefixed("background.", background))
    if getattr(det, "calibration_scores_", None) is not None:  # None: loaded from a file saved before them
        tensors["calibration.scores"] = torch.from_numpy(np.ascontiguousarray(det.calibration_scores_, np.float64))
    for name, key in FITTED_TENSORS.items():
        value = getattr(det, FITTED[name], None)
        if value is not None:
            tensors[key] = value.detach().contiguous().clone()
    if det.scaler_ is not None:
        tensors["scaler.mean"] = torch.from_numpy(center(det.scaler_).astype(np.float64))
        tensors["scaler.scale"] = torch.from_numpy(det.scaler_.scale_.astype(np.float64))
    atomic_write(folder / WEIGHTS_NAME, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    names = getattr(det, "feature_names_in_", None)
    record = {
        "format": FORMAT,
        "version": VERSION,
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in det.get_params().items()},
        "model": to_dict(det.model_.config),
        "background_model": None if background is None else to_dict(background.config),
        "fitted": {
            "offset_": det.offset_,
            "n_features_in_": det.n_features_in_,
            "feature_names_in_": None if names is None else [str(n) for n in names],
            "score_": det.score_,
            "image_shape_": None if det.image_shape_ is None else list(det.image_shape_),
            "size_": {k: (list(v) if isinstance(v, tuple) else v) for k, v in det.size_.items()},
            "likelihood_": det.likelihood_,
            "refits_": det.refits_,
            "standardized": det.scaler_ is not None,
            "scaler": det.standardize if det.scaler_ is not None else None,
        },
        "weights_sha256": _sha256(folder / WEIGHTS_NAME),
    }
    atomic_write_text(folder / JSON_NAME, json.dumps(record, indent=2) + "\n")
    return folder


def load(folder: Path, detector: Callable[[dict[str, Any]], Any]):
    """The detector saved in `folder`, rebuilt by `detector(params)` (the class's checked constructor,
    `AnomalyDetector.from_params`: this module does not import the class); CheckpointError naming the
    first thing that does not hold."""
    path = folder / JSON_NAME
    rec = read_json(folder, JSON_NAME, "a saved detector")
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an aevb anomaly detector (format {_get(rec, 'format')!r})")
    if rec.get("version") not in range(1, VERSION + 1):
        raise CheckpointError(f"{path} has version {rec.get('version')!r}; this aevb reads versions 1 to {VERSION}")
    try:
        params, fitted = dict(rec["params"]), dict(rec["fitted"])
        if rec["version"] == 1:  # "auto" and True meant mean / standard deviation then
            params["standardize"] = "standard" if params.get("standardize") in ("auto", True) else False
            fitted["scaler"] = "standard" if fitted["standardized"] else None
        if "seed" in params:  # saved before the scikit-learn name (version <= 2)
            params["random_state"] = params.pop("seed")
        if isinstance(params.get("image_shape"), list):
            params["image_shape"] = tuple(params["image_shape"])
        if "refits" not in params:  # saved before the concentration steps: it was fitted once
            params["refits"] = 0
        if params.get("hidden") is not None:
            params["hidden"] = tuple(params["hidden"])
        if rec["version"] < 5:  # before the weight: "complexity" added the whole code length
            params.setdefault("complexity_weight", 1.0)
        if rec["version"] < 4:  # before "auto": the parameters are the values it was fitted with
            fitted["likelihood_"], fitted["refits_"] = params["likelihood"], params["refits"]
        likelihood, refits = str(fitted["likelihood_"]), int(fitted["refits_"])
        det = detector(params)
        model_config, _ = from_dict(rec["model"])
        background_config = None if rec.get("background_model") is None else from_dict(rec["background_model"])[0]
        shape = fitted.get("image_shape_")  # absent before version 3: a table
        shape = None if shape is None else (int(shape[0]), int(shape[1]))
        offset, d = float(fitted["offset_"]), int(fitted["n_features_in_"])
        score, names, standardized = fitted["score_"], fitted["feature_names_in_"], bool(fitted["standardized"])
        kind = fitted["scaler"]
        if standardized and kind not in SCALINGS:
            raise ValueError(f"scaler {kind!r} is not one of {', '.join(SCALINGS)}")
        size = {k: (tuple(v) if isinstance(v, list) else v) for k, v in dict(fitted["size_"]).items()}
        expected_sha = str(rec["weights_sha256"])
    except (KeyError, TypeError, ValueError, AevbError) as e:
        raise CheckpointError(f"{path} is invalid: {e}") from None
    if not math.isfinite(offset):
        raise CheckpointError(f"{path}: offset_ is {offset}, not a finite number")
    if model_config.likelihood != likelihood:
        raise CheckpointError(f"{path}: likelihood_ {likelihood!r} is not the model's {model_config.likelihood!r}")
    if model_config.data_dim != d or score not in SCORES:
        raise CheckpointError(f"{path}: n_features_in_ {d} or score {score!r} does not match the model config")
    if ("background" in NEEDS.get(score, ())) != (background_config is not None):
        has = "with" if background_config is not None else "without"
        raise CheckpointError(f"{path}: score {score!r} {has} a background model")
    if background_config is not None and background_config.data_dim != d:
        raise CheckpointError(f"{path}: the background model has {background_config.data_dim} features, not {d}")
    if shape is not None and (shape[0] < 1 or shape[1] < 1 or shape[0] * shape[1] != d):
        raise CheckpointError(f"{path}: image_shape_ {list(shape)} does not hold rows of {d} features")
    if names is not None and len(names) != d:
        raise CheckpointError(f"{path}: {len(names)} feature names for {d} features")
    weights = folder / WEIGHTS_NAME
    if weights.is_file() and _sha256(weights) != expected_sha:
        raise CheckpointError(
            f"{weights} does not match {JSON_NAME} (SHA-256 differs): the pair was not saved together"
        )
    tensors, _ = read_tensors(weights)
    model = _model(model_config, tensors, "model.", weights)
    background = None if background_config is None else _model(background_config, tensors, "background.", weights)
    calibration = tensors.get("calibration.scores")
    if calibration is not None and (
        calibration.dtype != torch.float64
        or calibration.dim() != 1
        or calibration.numel() < 1
        or bool((calibration[1:] < calibration[:-1]).any())
    ):
        raise CheckpointError(f"{weights}: calibration.scores is not a sorted float64 vector")
    known = ("scaler.mean", "scaler.scale", "calibration.scores", *FITTED_TENSORS.values())
    extra = sorted(k for k in tensors if not k.startswith(("model.", "background.")) and k not in known)
    if extra:
        raise CheckpointError(f"{weights}: unexpected tensors {extra[:3]}")
    fitted_tensors = _fitted_tensors(tensors, score, model, weights, int(rec["version"]))
    det.scaler_ = None
    if standardized:
        mean, scale = tensors.get("scaler.mean"), tensors.get("scaler.scale")
        for name, t in (("scaler.mean", mean), ("scaler.scale", scale)):
            if t is None or tuple(t.shape) != (d,) or not torch.isfinite(t).all():
                raise CheckpointError(f"{weights}: {name} is missing, not ({d},) or not finite")
        if not (scale > 0).all():
            raise CheckpointError(f"{weights}: scaler.scale has entries <= 0")
        det.scaler_ = rebuild(kind, mean.numpy().astype(np.float64), scale.numpy().astype(np.float64))
    det.model_ = model
    det.offset_, det.n_features_in_, det.score_, det.size_ = offset, d, score, size
    det.image_shape_, det.background_ = shape, background
    det.likelihood_, det.refits_ = likelihood, refits
    det.calibration_scores_ = None if calibration is None else calibration.numpy()
    for name, value in fitted_tensors.items():
        setattr(det, FITTED[name], value)
    if names is not None:
        det.feature_names_in_ = np.asarray(names, dtype=object)
    return det


def _fitted_tensors(
    tensors: dict[str, torch.Tensor], score: str, model: VAE, path: Path, version: int
) -> dict[str, Any]:
    """The extras of FITTED_TENSORS as `score` needs them, each None where it does not; CheckpointError where one
    it needs is missing or malformed, or one it does not need is there. A "combined" detector of an older version
    holds what its LEGACY_PARTS parts need (`combined.needs`); version 6's density is computed from its reference."""
    count = LEGACY_PARTS.get(version, len(PARTS))
    needs = combined_needs(count) if score == "combined" else NEEDS.get(score, ())
    out: dict[str, Any] = {}
    for name, key in FITTED_TENSORS.items():
        t = tensors.get(key)
        if (t is not None) != (name in needs):
            raise CheckpointError(f"{path}: score {score!r} {'needs' if t is None else 'has no use for'} {key}")
        if t is None:
            out[name] = None
            continue
        if name == "reference":
            ok = t.dtype == torch.float32 and t.dim() == 2 and t.shape[0] >= 2 and t.shape[1] == model.noise_dim
        elif name == "density":
            rows = tensors["latent.reference"].shape[0]
            ok = t.dtype == torch.float64 and tuple(t.shape) == (2, rows) and bool((t[0] >= 0).all() & (t[1] > 0).all())
        elif name == "mixture":
            ok = _mixture_ok(t, model.noise_dim)
        else:
            ok = t.dtype == torch.float64 and tuple(t.shape) == (2, count) and bool((t[1] > 0).all())
        if not ok or not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: {key} is malformed (dtype {t.dtype}, shape {list(t.shape)})")
        out[name] = t
    if version < 7 and score == "combined":
        out["density"] = local_density(out["reference"])
    return out


def _mixture_ok(t: torch.Tensor, latent_dim: int) -> bool:
    """Whether t is a packed mixture (`mixture`) over `latent_dim` dimensions: float64 (K >= 1, 1 + D + D^2), its
    weights summing to 1 and its precision Cholesky factors upper-triangular with a positive diagonal."""
    if t.dtype != torch.float64 or t.dim() != 2 or t.shape[0] < 1 or not bool(torch.isfinite(t).all()):
        return False
    try:
        if dimension(t.shape[1]) != latent_dim:
            return False
    except ValueError:
        return False
    log_w, _, chol = unpack(t)
    diagonal = torch.diagonal(chol, dim1=1, dim2=2)
    lower = torch.tril(chol, diagonal=-1)
    return bool(abs(float(log_w.exp().sum()) - 1.0) < 1e-6 and (diagonal > 0).all() and (lower == 0).all())


def _prefixed(prefix: str, model: VAE) -> dict[str, torch.Tensor]:
    # the unwrapped module's own names under `prefix`; clone so no two entries share storage
    return {prefix + k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def _model(config, tensors: dict[str, torch.Tensor], prefix: str, path: Path) -> VAE:
    """A VAE of `config` holding the tensors saved under `prefix`, in eval mode; CheckpointError if they differ."""
    model = VAE(config)
    load_weights(model, {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, path)
    return model.eval()


def _get(rec: Any, key: str) -> Any:
    return rec.get(key) if isinstance(rec, dict) else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None
    return h.hexdigest()
