"""The checks of `AnomalyDetector`'s parameters, run by `fit` and by `load` (through `from_params`), and what
its "auto" score, likelihood and refits become on the rows it is fitted to (`resolved`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .columns import likelihoods
from .concentration import REFITS_DEFAULT
from .inputs import InputError
from .scaling import SCALINGS
from .scores import SCORES

# score, likelihood and refits "auto" per kind of rows: images are rows that image_shape_ holds (given as (H, W),
# or found by image_shape="auto", `complexity.infer_image_shape`), tables the others. On images the robust
# background caps what a wrong pixel costs and the refits leave out rows of the normal classes: one fit of the
# learned Gaussian ranks one-class-out MNIST and Fashion-MNIST better; and the combined score (log p(x), the full
# complexity correction, the latent nearest-neighbour distance, local outlier factor and mixture density,
# standardised and added) ranks both better than log p(x) or its tempered correction alone
# (docs/benchmarks/anomaly_notes.md). Tables keep log p(x): on the ADBench sets the combined score of three parts
# ranked worse (mean ROC-AUC 0.876 against 0.896, seeds 0-4, the same notes), and no sum with a latent score beat it.
AUTO: dict[str, dict[str, Any]] = {
    "images": {"score": "combined", "likelihood": "gaussian-learned", "refits": 0},
    "table": {"score": "log-likelihood", "likelihood": "gaussian-robust", "refits": REFITS_DEFAULT},
}


def resolved(det: Any, images: bool) -> tuple[str, str, int]:
    """(score, likelihood, refits) that det fits with: its own values, each "auto" replaced by AUTO's for the
    rows."""
    auto = AUTO["images" if images else "table"]
    score = auto["score"] if det.score == "auto" else det.score
    likelihood = auto["likelihood"] if det.likelihood == "auto" else det.likelihood
    refits = int(auto["refits"] if isinstance(det.refits, str) and det.refits == "auto" else det.refits)
    return score, likelihood, refits


def check_params(det: Any) -> None:
    """InputError naming the first of the detector's parameters that is out of its range."""

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise InputError(msg)

    sh = det.image_shape
    need(
        sh is None
        or (isinstance(sh, str) and sh == "auto")
        or (
            isinstance(sh, (tuple, list))
            and len(sh) == 2
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in sh)
        ),
        f"image_shape must be 'auto', None or (H, W) of integers >= 1; got {sh!r}",
    )
    m = det.background_noise
    need(
        isinstance(m, (int, float)) and not isinstance(m, bool) and 0 < m < 1,
        f"background_noise must be in (0, 1); got {m!r}",
    )
    need(
        det.score == "auto" or det.score in SCORES,
        f"score must be 'auto' or one of {', '.join(SCORES)}; got {det.score!r}",
    )
    cw = det.complexity_weight
    need(
        isinstance(cw, (int, float)) and not isinstance(cw, bool) and math.isfinite(cw) and cw >= 0,
        f"complexity_weight must be a finite number >= 0; got {cw!r}",
    )
    c = det.contamination
    need(
        c == "auto" or (isinstance(c, (int, float)) and not isinstance(c, bool) and 0 < c <= 0.5),
        f"contamination must be 'auto' or a fraction in (0, 0.5]; got {c!r}",
    )
    names = likelihoods()
    need(
        det.likelihood == "auto" or det.likelihood in names,
        f"likelihood must be 'auto' or one of {', '.join(names)}; got {det.likelihood!r}",
    )
    need(
        det.standardize is False or det.standardize in SCALINGS,
        f"standardize must be one of {', '.join(SCALINGS)} or False; got {det.standardize!r}",
    )
    need(
        det.columns is None or isinstance(det.columns, str),
        f"columns must be None or a string like 'gaussian-learned:3,poisson:2'; got {det.columns!r}",
    )
    for name in ("n_samples", "latent_dim", "batch_size", "epochs"):
        v = getattr(det, name)
        need(
            v is None and name != "n_samples" or isinstance(v, (int, np.integer)) and v >= 1,
            f"{name} must be an integer >= 1; got {v!r}",
        )
    need(
        det.hidden is None or (len(det.hidden) >= 1 and all(int(h) >= 1 for h in det.hidden)),
        f"hidden must be None or a tuple of layer sizes >= 1; got {det.hidden!r}",
    )
    need(
        isinstance(det.lr, (int, float)) and math.isfinite(det.lr) and det.lr > 0,
        f"lr must be a finite number > 0; got {det.lr!r}",
    )
    t = det.trim
    need(
        isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t < 0.5,
        f"trim must be a fraction in [0, 0.5); got {t!r}",
    )
    r = det.refits
    need(
        (isinstance(r, str) and r == "auto")
        or (isinstance(r, (int, np.integer)) and not isinstance(r, bool) and r >= 0),
        f"refits must be 'auto' or an integer >= 0; got {r!r}",
    )
    w = det.outlier_weight
    need(
        isinstance(w, (int, float)) and not isinstance(w, bool) and 0 < w < 1,
        f"outlier_weight must be in (0, 1); got {w!r}",
    )
