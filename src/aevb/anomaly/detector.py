"""`AnomalyDetector`: a VAE fitted on (mostly) normal rows flags the rows it finds improbable.

It follows scikit-learn's outlier-detector conventions (as `IsolationForest` does): `__init__` only
stores parameters, `fit` returns self and sets attributes ending in `_`, `score_samples` is higher for
more normal rows, `decision_function = score_samples - offset_` is negative for outliers, and
`predict` returns +1 (inlier) / -1 (outlier).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin

from . import persist
from .calibration import conformal_p_values
from .columns import check_values, rescaled_mask
from .combined import parts, standardisation, standardised_sum
from .complexity import infer_image_shape, png_code_length
from .concentration import TRIM_DEFAULT, support
from .fitting import chosen_size, fit_vae, model_config, perturbed
from .inputs import InputError, as_matrix, feature_names
from .latent import NEIGHBOURS_DEFAULT, density_of, nearest, reference_codes
from .mixture import fit_mixture
from .params import check_params, resolved
from .scaling import fit_scaler, transform
from .scores import COMPLEXITY_WEIGHT_DEFAULT, FITTED, NEEDS, SCORES, fitted_needs


def _finite(s: np.ndarray) -> np.ndarray:
    # a score that still overflowed float32 belongs to a row far outside the training data: the lowest score
    return np.where(np.isfinite(s), s, np.finfo(np.float64).min)


class AnomalyDetector(OutlierMixin, BaseEstimator):
    """Variational auto-encoder anomaly detector with scikit-learn's outlier-detector API.

    Parameters
    ----------
    score : "auto" (default), "log-likelihood", "elbo", "reconstruction", "complexity", "likelihood-ratio",
        "latent-knn", "latent-lof", "latent-gmm" or "combined"
        The anomaly score, per row (higher = more normal): the importance-sampled log p(x) in nats
        with k = `n_samples` (the IWAE bound L_k), the ELBO with L = `n_samples` draws and the
        analytic KL, An & Cho's (2015) reconstruction probability, the mean over L = `n_samples`
        draws z ~ q(z|x) of log p(x|z), "complexity" = log p(x) + mu L(x) ln 2 with L(x) the PNG code
        length in bits and mu = `complexity_weight` (Serra et al. 2020, tempered; `aevb.anomaly.complexity`),
        "likelihood-ratio" = log p(x) - log p_background(x) (Ren et al. 2019; see `background_noise`),
        "latent-knn" = minus the mean distance of the posterior mean E[z|x] to those of its 5 nearest training
        rows (`aevb.anomaly.latent`), "latent-lof" = minus the log local outlier factor (Breunig et al. 2000) of
        E[z|x] among the training rows' with 5 neighbours (unitless), "latent-gmm" = the log density of E[z|x]
        under a mixture of 20 full-covariance Gaussians fitted to the training rows' (nats of z;
        `aevb.anomaly.mixture`), or "combined" = log p(x), the full complexity correction log p(x) + L(x) ln 2,
        "latent-knn", "latent-lof" and "latent-gmm", each standardised by the training rows' median and
        interquartile range, added (unitless; `aevb.anomaly.combined`).
        "auto" is "combined" when the rows are images (`image_shape_` is not None) and "log-likelihood"
        for a table (`aevb.anomaly.params.AUTO`; fitted as `score_`).
    complexity_weight : float >= 0, default 0.1
        For score="complexity": mu, the weight of the code length. mu = 1 is Serra et al.'s correction,
        which swamps the density on one-class-out MNIST and Fashion-MNIST; mu = 0.1, chosen on one seed and
        confirmed on two others, ranks both better than log p(x) alone (docs/benchmarks/anomaly_notes.md).
        "combined" takes the full correction (mu = 1) as one of its parts, whatever this is.
    contamination : "auto" or float in (0, 0.5]
        Sets `offset_` from the training scores: a fraction c puts it at their c-quantile (so about
        c of the training rows are outliers); "auto" at the lower Tukey fence Q1 - 1.5 IQR.
    n_samples : int, default 100
        Importance samples k (log-likelihood) or posterior draws L (elbo, reconstruction) per row.
    latent_dim, hidden, batch_size, epochs : None or int / tuple of int
        None uses the data-size rule of `default_size(n, d, images)` (two ReLU layers of 32..256 units,
        latent 2..16, about 2000 Adam steps in 10 to 50 epochs on a table, about 6000 in 10 to 120 on
        images, `image_shape_` not None); `fit` records the choice in the fitted attribute `size_`.
    lr : float, default 1e-3
        Adam's learning rate.
    likelihood : "auto" (default) or str
        p(x|z): "auto" is "gaussian-learned" when the rows are images (`image_shape_` is not None) and
        "gaussian-robust" for a table (`aevb.anomaly.params.AUTO`; fitted as `likelihood_`); else one of
        `aevb.anomaly.likelihoods()`: every name of `aevb.likelihoods.LIKELIHOODS` but
        categorical, whose classes are given per group of columns (`columns`). "gaussian-learned" is a
        Gaussian per feature with a learned mean and variance; "gaussian-robust" mixes it with a fixed
        Cauchy(0, 1) background of weight `outlier_weight` (on the rescaled features), so that the
        anomalies among the training rows are explained by the background instead of teaching the decoder
        a large variance, while at scoring time a value the Gaussian cannot explain still costs
        -log(w / pi) + log(1 + x^2) nats (measured on ADBench in docs/benchmarks/anomaly.md). Each head's
        docstring (`aevb.likelihoods`) says what it models; `fit` refuses values outside its support
        (e.g. "bernoulli" needs [0, 1], "poisson" whole numbers >= 0). "mixed" takes one kind per group
        of columns from `columns`.
    outlier_weight : float in (0, 1), default 0.2
        For likelihood="gaussian-robust" (also as a "mixed" column kind): the background's weight w,
        the prior probability that a feature value is an outlier.
    columns : None or str
        For likelihood="mixed" only: "KIND:N,..." groups of N consecutive columns, KIND one of
        `aevb.likelihoods.column_kinds()`, categorical written categoricalC (class indices 0..C-1), e.g.
        "gaussian-learned:3,poisson:2,categorical4:1".
    logvar_min : float, default -4.0
        Lower clamp of the learned log-variance on the rescaled data (sigma >= 0.135 units of the
        scale, the IQR by default), so that discrete or near-constant features cannot dominate the score.
    standardize : "robust" (default), "standard" or False
        How the columns of location-scale likelihoods (their head's `location_scale`) are centred and
        scaled, with statistics of the training rows only:
        "robust" subtracts the median and divides by the interquartile range (a column whose IQR
        is 0 is only centred), so that the anomalies among the training rows cannot inflate the
        scale; "standard" uses the mean and standard deviation; False leaves them.
        Rescaled values are clipped to +-50. The other columns (counts, classes, [0, 1] values) are
        never rescaled.
    trim : float in [0, 0.5), default 0.05
        The fraction of the training rows left out of each refit: the rows with the lowest `score` under
        the model fitted before (see `refits`).
    refits : "auto" (default) or int >= 0
        "auto" is 0 for images (`image_shape_` not None: one fit ranks one-class-out MNIST and Fashion-MNIST
        better, docs/benchmarks/anomaly_notes.md) and REFITS_DEFAULT = 2 for a table; fitted as `refits_`.
        Concentration steps (as in the MCD estimator's C-steps, Rousseeuw & Van Driessen 1999): the VAE
        is fitted on every row, then `refits` times afresh, from the same initialisation, on the
        training rows the previous model scores above its `trim`-quantile. The anomalies among the
        training rows (ADBench's setting: they are not removed) then no longer shape the final model,
        even when they form a cluster that a single fit models as well as the normal rows. 0 fits once;
        each refit costs one more fit. The rows of the last fit are the fitted attribute `support_`.
    image_shape : "auto" (default), (H, W) or None
        Whether the rows are H x W grey images in [0, 1] (they pick score, likelihood and refits "auto", and the code
        length of score="complexity"). "auto" takes (s, s) when a row has s*s >= 64 columns and every training
        value is in [0, 1], else None: a table, whose code length is 0, so that "complexity" equals
        "log-likelihood". Fitted as `image_shape_`.
    background_noise : float in (0, 1), default 0.2
        For score="likelihood-ratio": the fraction (Ren et al.'s mu) of the (rescaled) training values that are
        replaced by a uniform draw between their column's minimum and maximum (Ren et al. 2019 flip 0.2 of the
        pixels) before the background VAE, of the same architecture, is fitted to them (seed random_state + 1).
    random_state : int, default 0
        Seeds the initialisation, the training draws and the evaluation noise, which is the same for every
        row: a row's score does not depend on the rows scored with it, and the same data and seed give the
        same scores, call after call. scikit-learn's name (it was `seed`; a detector saved
        with `seed` loads with it as random_state).
    verbose : bool, default False
        A progress bar over the training epochs.

    Fitted attributes: `model_` (an `aevb.VAE`, eval mode), `scaler_` (`RobustScaler`, `StandardScaler` or None),
    `offset_`, `n_features_in_`, `background_` (a VAE for score="likelihood-ratio", else None),
    `image_shape_` ((H, W) or None), `likelihood_` and `refits_` (what "auto" became, else the parameters),
    `calibration_scores_` (the training scores, sorted, that `p_values` ranks against),
    `latent_reference_` (the training rows' posterior means, (n, Dz) float32, for the latent scores and
    "combined", else None), `latent_density_` (for "latent-lof" and "combined": each training row's distance to
    its 5th nearest other code (row 0) and its local reachability density (row 1), (2, n) float64, else None),
    `latent_mixture_` (for "latent-gmm" and "combined": the Gaussian mixture fitted to the training codes with
    seed random_state, packed as `aevb.anomaly.mixture` says, (K, 1 + Dz + Dz^2) float64, else None),
    `combined_standardisation_` (for "combined": the median (row 0) and interquartile range (row 1) of the five
    parts of `aevb.anomaly.combined.PARTS` over the training rows, (2, 5) float64, else None; a training row's own
    code is left out of its neighbour scores),
    `feature_names_in_` (DataFrame input only), `score_` (the score in use: what "auto" became, else the
    parameter), `size_` (the architecture and schedule used), `support_` (a mask of the training rows
    the final model was fitted on; not saved by `save`), `train_scores_` (scores of the
    training rows; not saved by `save`).
    """

    def __init__(
        self,
        score: str = "auto",
        complexity_weight: float = COMPLEXITY_WEIGHT_DEFAULT,
        contamination: str | float = "auto",
        n_samples: int = 100,
        latent_dim: int | None = None,
        hidden: tuple[int, ...] | None = None,
        batch_size: int | None = None,
        epochs: int | None = None,
        lr: float = 1e-3,
        likelihood: str = "auto",
        outlier_weight: float = 0.2,
        columns: str | None = None,
        logvar_min: float = -4.0,
        standardize: str | bool = "robust",
        trim: float = TRIM_DEFAULT,
        refits: int | str = "auto",
        image_shape: tuple[int, int] | str | None = "auto",
        background_noise: float = 0.2,
        random_state: int = 0,
        verbose: bool = False,
    ):
        self.score = score
        self.complexity_weight = complexity_weight
        self.contamination = contamination
        self.n_samples = n_samples
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.batch_size = batch_size
        self.epochs = epochs
        self.lr = lr
        self.likelihood = likelihood
        self.outlier_weight = outlier_weight
        self.columns = columns
        self.logvar_min = logvar_min
        self.standardize = standardize
        self.trim = trim
        self.refits = refits
        self.image_shape = image_shape
        self.background_noise = background_noise
        self.random_state = random_state
        self.verbose = verbose

    # --- fitting -----------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> AnomalyDetector:
        """Fit the scaler and the VAE on X (n, d), without labels (`y` is ignored); returns self."""
        self._check_params()
        names = feature_names(X)
        a = as_matrix(X)
        n, d = a.shape
        if n < 2:
            raise InputError(f"X has 1 sample (n_samples={n}); at least 2 rows are needed to fit")
        self.image_shape_ = infer_image_shape(a) if self.image_shape == "auto" else self.image_shape
        if self.image_shape_ is not None:
            self.image_shape_ = (int(self.image_shape_[0]), int(self.image_shape_[1]))
            if self.image_shape_[0] * self.image_shape_[1] != d:
                raise InputError(f"image_shape {self.image_shape_} does not hold rows of {d} columns")
        self.score_, self.likelihood_, self.refits_ = resolved(self, images=self.image_shape_ is not None)
        check_values(a, self.likelihood_, self.columns)
        self.n_features_in_ = d
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.scaler_ = self._make_scaler(a)
        x = self._tensor(a)
        self.size_ = size = chosen_size(n, d, self.get_params(), images=self.image_shape_ is not None)
        config = model_config(d, size, self.likelihood_, self.columns, self.logvar_min, self.outlier_weight)
        self.background_ = None
        if self.score_ == "likelihood-ratio":
            noisy = perturbed(x, self.background_noise, self.random_state + 1)
            self.background_ = fit_vae(noisy, config, size, self.lr, self.random_state + 1, "background", self.verbose)
        self.support_ = np.ones(n, dtype=bool)
        for step in range(self.refits_ + 1 if self.trim > 0 else 1):
            if step:  # a concentration step: refit afresh on the rows the last model scores highest
                self.support_ = support(self.train_scores_, self.trim)
            rows = x[torch.from_numpy(self.support_)]
            self.model_ = fit_vae(rows, config, size, self.lr, self.random_state, f"fit {step + 1}", self.verbose)
            self.train_scores_ = self._fit_scores(x, a)
        self.offset_ = self._offset(self.train_scores_)
        self.calibration_scores_ = np.sort(self.train_scores_)
        return self

    def _check_params(self) -> None:
        check_params(self)

    def _make_scaler(self, a: np.ndarray):
        mask = rescaled_mask(self.likelihood_, self.columns, a.shape[1])
        if self.standardize is False or not mask.any():
            return None
        return fit_scaler(a, self.standardize, mask)

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        if self.scaler_ is not None:
            a = transform(self.scaler_, a, rescaled_mask(self.likelihood_, self.columns, a.shape[1]))
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    def _offset(self, train_scores: np.ndarray) -> float:
        if self.contamination == "auto":
            q1, q3 = np.percentile(train_scores, [25, 75])
            return float(q1 - 1.5 * (q3 - q1))
        return float(np.percentile(train_scores, 100.0 * self.contamination))

    def _fit_scores(self, x: torch.Tensor, a: np.ndarray) -> np.ndarray:
        """The training rows' scores under `score_` by the model just fitted, (n,) float64, after fitting from them
        what the score needs: their posterior means (`latent_reference_`, for the latent scores and "combined"),
        their k-distances and local densities among themselves (`latent_density_`, for "latent-lof" and
        "combined"), a Gaussian mixture fitted to them (`latent_mixture_`, for "latent-gmm" and "combined") and
        the combined score's standardisation (`combined_standardisation_`). A training row's nearest neighbour
        among the reference codes, its own code, is left out of its neighbour scores."""
        needs = NEEDS.get(self.score_, ())
        self.latent_reference_ = reference_codes(self.model_, x) if "reference" in needs else None
        self.latent_density_, own = None, None
        if "density" in needs:  # the training codes' search among themselves, for the density and their own scores
            own = nearest(self.latent_reference_, self.latent_reference_, NEIGHBOURS_DEFAULT, exclude_self=True)
            self.latent_density_ = density_of(*own)
        self.latent_mixture_ = None
        if "mixture" in needs:
            self.latent_mixture_ = fit_mixture(self.latent_reference_, seed=self.random_state)
        self.combined_standardisation_ = None
        if "standardised" not in needs:
            return self._scores(x, a, self.score_, training=True, searched=own)
        code_bits = torch.from_numpy(png_code_length(a, self.image_shape_))
        with torch.no_grad():
            train_parts = parts(
                self.model_, x, self.n_samples, self.random_state,
                code_bits=code_bits, reference=self.latent_reference_, density=self.latent_density_,
                mixture=self.latent_mixture_, exclude_self=True, searched=own,
            )  # fmt: skip
        self.combined_standardisation_ = standardisation(train_parts)
        return _finite(standardised_sum(train_parts, self.combined_standardisation_).numpy())

    # --- scoring -----------------------------------------------------------------------------

    def _scores(
        self, x: torch.Tensor, a: np.ndarray, name: str, training: bool = False, searched: Any = None
    ) -> np.ndarray:
        """Score `name` of the rows `a` (n, d) as given, `x` the model's (rescaled) view of them; (n,) float64.
        training: the rows are the training rows the latent reference was encoded from (left out of their own
        latent distances). searched: their neighbour search among the reference codes, made by `_fit_scores` for
        the density (`latent.nearest`), which "latent-lof" then takes instead of searching again."""
        extra: dict[str, Any] = {}
        for need in fitted_needs(name, getattr(self, "combined_standardisation_", None)):
            if need == "code_bits":  # L(x) of the rows as given, in bits; zeros for a table
                extra["code_bits"] = torch.from_numpy(png_code_length(a, self.image_shape_))
            elif need == "weight":
                extra["weight"] = self.complexity_weight
            else:  # fitted with the score
                value = getattr(self, FITTED[need], None)
                if value is None:
                    raise InputError(
                        f"the {name} score needs a detector fitted with score={name!r} (this one, fitted with "
                        f"score={self.score_!r}, has no {FITTED[need]})"
                    )
                extra[need] = value
        if "reference" in extra:
            extra["exclude_self"] = training
        if searched is not None and "density" in extra:
            extra["searched"] = searched
        with torch.no_grad():
            s = SCORES[name](self.model_, x, self.n_samples, seed=self.random_state, **extra).double().numpy()
        return _finite(s)

    def _validate(self, X: Any) -> tuple[torch.Tensor, np.ndarray]:
        if not hasattr(self, "model_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this AnomalyDetector is not fitted yet; call fit(X) first")
        names = feature_names(X)
        fitted = getattr(self, "feature_names_in_", None)
        if names is not None and fitted is not None and list(names) != list(fitted):
            raise InputError(
                f"X's columns {list(names)[:5]} differ from the fitted ones {list(fitted)[:5]} "
                "(names and order must match)"
            )
        a = as_matrix(X)
        if a.shape[1] != self.n_features_in_:
            raise InputError(
                f"X has {a.shape[1]} features, but AnomalyDetector is expecting {self.n_features_in_} features as input"
            )
        check_values(a, self.likelihood_, self.columns)
        return self._tensor(a), a

    def score_samples(self, X: Any) -> np.ndarray:
        """The fitted score of every row, (n,) in nats: higher = more normal."""
        x, a = self._validate(X)
        return self._scores(x, a, self.score_)

    def scores(self, X: Any, name: str) -> np.ndarray:
        """Any score of `SCORES` of every row, (n,) nats; "complexity" with the detector's `complexity_weight`;
        "likelihood-ratio" only when fitted with it (it needs `background_`).

        Lets one fitted model be compared under each score; `offset_` belongs to `score_` only.
        """
        if name not in SCORES:
            raise InputError(f"score must be one of {', '.join(SCORES)}; got {name!r}")
        x, a = self._validate(X)
        return self._scores(x, a, name)

    def p_values(self, X: Any) -> np.ndarray:
        """Conformal p-values, (n,) in [1 / (n_train + 1), 1]: (1 + #{training scores <= s}) / (n_train + 1)
        for each row's score s (higher = more normal, so this counts the training rows at least as anomalous
        as the row). Small = anomalous: flagging p <= alpha flags about a fraction alpha of new normal rows.

        The training scores are in-sample (`fit` holds no rows out: the VAE was fitted on the rows it ranks
        against), so they can run higher than those of new normal rows, whose p-values then run low: with an
        over-fitted model, more than alpha of new normal rows are flagged. `calibration_scores_` holds them.
        """
        scores = self.score_samples(X)
        if self.calibration_scores_ is None:
            raise InputError("this detector was saved before aevb kept its training scores; fit it again")
        return conformal_p_values(self.calibration_scores_, scores)

    def decision_function(self, X: Any) -> np.ndarray:
        """score_samples(X) - offset_, (n,): negative for outliers, positive for inliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """+1 for inliers and -1 for outliers, (n,) int."""
        return np.where(self.decision_function(X) < 0, -1, 1)

    # --- persistence -------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the fitted detector to the folder `path` (safetensors + JSON, no pickle); returns it."""
        return persist.save(self, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> AnomalyDetector:
        """A detector saved by `save`, checked against its own record; CheckpointError if it does not hold."""
        return persist.load(Path(path), cls.from_params)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> AnomalyDetector:
        """An unfitted detector with these parameters; InputError naming the first bad one."""
        det = cls(**params)
        det._check_params()
        return det
