"""What the explorer page asks of a run: decode a latent point, interpolate, sample, rank test items.

`Explorer` holds the model and the run's test split; every method validates its inputs and raises
`ApiError` (an HTTP status and a one-line message) on bad ones, so the web layer only translates.
Returned values are JSON-ready: flat float lists of E[x|z] in the data's units.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import load, read_config
from ..config import TrainConfig
from ..evaluate import log_likelihood
from ..model import VAE
from ..plots import is_image
from ..preprocess import check_labels, run_data
from ..projection import latent_projection

Z_LIMIT = 1e4  # |z_i| beyond this is refused: the prior puts no mass there and outputs can overflow
MAX_STEPS = 64  # interpolation steps
MAX_SAMPLES = 64
MAX_RANKED = 100


class ApiError(Exception):
    """A request the explorer refuses: HTTP `status` (4xx) and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _integer(value: Any, name: str, low: int, high: int) -> int:
    """A whole number in [low, high] from JSON (bools and floats like 2.5 are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ApiError(400, f"{name} must be a whole number")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ApiError(400, f"{name} must be a whole number")
    value = int(value)
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}, got {value}")
    return value


class Explorer:
    """A trained run and its test split, ready to answer the page's requests."""

    def __init__(
        self,
        run_dir: str | Path,
        k: int = 100,
        data_dir: str | None = None,
        on_batch: Callable[[int], None] | None = None,
        model: VAE | None = None,
    ):
        self.run_dir = Path(run_dir)
        model_cfg, train_cfg = read_config(self.run_dir)
        self.train_cfg = train_cfg or TrainConfig()
        self.model = model if model is not None else load(self.run_dir)  # given: built with your own networks
        self.config = model_cfg
        x, labels, self.source = run_data(
            model_cfg, self.train_cfg.binarize, self.train_cfg.dataset, "test", None, data_dir
        )
        self.x, self.labels, self.k = x, labels, k
        self.y = check_labels(labels, x.shape[0], model_cfg, self.source)  # a conditional run's labels, else None
        with torch.no_grad():
            self.mu = self.model.top(self.model.encode(x, self.y).mean)  # (N, Dz): a stack's top layer z_L
        self.projection = latent_projection(self.mu.numpy().astype(np.float64))
        self.log_px = log_likelihood(self.model, x, k=k, seed=0, on_batch=on_batch, y=self.y)  # (N,) nats

    @property
    def n_items(self) -> int:
        return int(self.x.shape[0])

    def info(self) -> dict[str, Any]:
        """Shapes, names and the data range the page needs to draw."""
        flat = self.x.reshape(self.n_items, -1)
        p = self.projection
        return {
            "run": self.run_dir.name,
            "data": self.source,
            "latent_dim": self.model.top_dim,  # the top layer's of a stack
            "data_shape": list(self.config.data_shape),
            "is_image": is_image(self.config.data_shape),  # grey (H, W), or (C, H, W) with C = 1 or 3
            "likelihood": self.config.likelihood,
            "binarize": self.train_cfg.binarize,
            "items": self.n_items,
            "has_labels": self.labels is not None,
            "classes": self.config.classes,  # a conditional run decodes with one of these; 0: unconditional
            "feature_min": flat.min(0).values.tolist(),
            "feature_max": flat.max(0).values.tolist(),
            "k": self.k,
            "plane": {
                "kind": p.kind,
                "axes": list(p.axes),
                "center": p.center.tolist(),
                "components": p.components.tolist(),
            },
        }

    def points(self) -> dict[str, Any]:
        """The test posterior means on the page's plane, (N, 2), and their labels."""
        pts = self.projection(self.mu.numpy().astype(np.float64))
        return {
            "points": np.round(pts, 5).tolist(),
            "labels": self.labels.tolist() if self.labels is not None else None,
        }

    def parse_z(self, value: Any, name: str = "z") -> torch.Tensor:
        """A latent vector from JSON: a list of latent_dim finite numbers within +-Z_LIMIT."""
        d = self.model.top_dim
        if not isinstance(value, list):
            raise ApiError(400, f"{name} must be a list of {d} numbers")
        if len(value) != d:
            raise ApiError(400, f"{name} must have {d} numbers (the latent size), got {len(value)}")
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ApiError(400, f"{name} must hold numbers only, got {type(v).__name__}")
            if not math.isfinite(v):
                raise ApiError(400, f"{name} must hold finite numbers (no NaN or infinity)")
            if abs(v) > Z_LIMIT:
                raise ApiError(400, f"{name} values must lie within +-{Z_LIMIT:g}")
        return torch.tensor(value, dtype=torch.float32)

    def parse_label(self, value: Any) -> torch.Tensor | None:
        """A conditional run's class from JSON (0 when absent), as a (1,) tensor; None for an unconditional run,
        which refuses one."""
        if not self.config.conditional:
            if value is not None:
                raise ApiError(400, "label is for conditional runs (--condition-on labels); this run has none")
            return None
        label = _integer(0 if value is None else value, "label", 0, self.config.classes - 1)
        return torch.tensor([label])

    def decode(
        self, z: torch.Tensor, label: torch.Tensor | None = None, whole: torch.Tensor | None = None
    ) -> list[list[float]]:
        """E[x|z] (E[x|z, y] with a conditional run's `label` (1,) or (n,)) for each row of z (n, Dz),
        flattened: n lists of D numbers. A stack's z is its top layer; the layers below are at the means of
        p(z_l | z_{l+1}) (`VAE.from_top`), or given whole (`whole`, (n, noise_dim): a prior draw)."""
        z = z.reshape(-1, self.model.top_dim)
        y = None if label is None else label.expand(z.shape[0])
        with torch.no_grad():
            x = self.model.decode(self.model.from_top(z) if whole is None else whole, y).mean
        if not torch.isfinite(x).all():
            raise ApiError(422, "the decoder's output is not finite at this point; choose a smaller z")
        return x.tolist()

    def item_index(self, value: Any) -> int:
        """A test item's index; unknown ones (not a whole number, or out of range) are a 404."""
        if isinstance(value, str):
            value = int(value) if value.isdigit() else None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.n_items:
            raise ApiError(404, f"unknown item {value!r}: items are 0 .. {self.n_items - 1}")
        return value

    def item(self, index: Any) -> dict[str, Any]:
        i = self.item_index(index)
        return {
            "index": i,
            "label": int(self.labels[i]) if self.labels is not None else None,
            "x": self.x[i].reshape(-1).tolist(),
            "z": self.mu[i].tolist(),
            "log_likelihood": float(self.log_px[i]),
        }

    def interpolate(self, body: dict[str, Any]) -> dict[str, Any]:
        """E[x|z] along the straight line between the posterior means of two test items; a conditional
        run decodes each point with the label of the nearer item (as `aevb interpolate`)."""
        a, b = self.item_index(body.get("from")), self.item_index(body.get("to"))
        steps = _integer(body.get("steps", 8), "steps", 2, MAX_STEPS)
        t = torch.linspace(0, 1, steps).unsqueeze(1)
        z = (1 - t) * self.mu[a] + t * self.mu[b]  # (steps, Dz)
        y = None if self.y is None else self.y[torch.where(t.squeeze(1) > 0.5, b, a)]
        return {"from": a, "to": b, "z": z.tolist(), "x": self.decode(z, y)}

    def sample(self, body: dict[str, Any]) -> dict[str, Any]:
        """n draws z ~ p(z) (reproducible through `seed`) and E[x|z] (E[x|z, y = label] for a conditional run)."""
        n = _integer(body.get("n", 1), "n", 1, MAX_SAMPLES)
        seed = _integer(body.get("seed", 0), "seed", 0, 2**53)
        label = self.parse_label(body.get("label"))
        with torch.no_grad():  # the run's own prior: N(0, I), or its learned mixture (mog, vamp)
            z = self.model.sample_prior(n, torch.Generator().manual_seed(seed))  # a stack's: every layer
        top = self.model.top(z)
        return {"seed": seed, "z": top.tolist(), "x": self.decode(top, label, whole=z)}

    def ranking(self, n: Any) -> dict[str, Any]:
        """The n most and n least likely test items by importance-sampled log p(x) (k samples)."""
        n = _integer(n, "n", 1, MAX_RANKED)
        order = torch.argsort(self.log_px, descending=True).tolist()
        rows = lambda idx: [
            {
                "index": i,
                "label": int(self.labels[i]) if self.labels is not None else None,
                "log_likelihood": float(self.log_px[i]),
            }
            for i in idx
        ]
        return {"k": self.k, "most": rows(order[:n]), "least": rows(order[::-1][:n])}
