"""The combined score: five scores that fail on different kinds of anomaly, each standardised by its training
rows' median and interquartile range, added.

- log p(x), the importance-sampled log-likelihood: ranks simple inputs (few ink pixels) as normal whatever they are;
- c_1(x) = log p(x) + L(x) ln 2, Serra et al.'s (2020) complexity correction at full weight (L the PNG code
  length in bits, `complexity.png_code_length`): corrects that, and over-corrects on complex inputs;
- the latent nearest-neighbour score (`latent.latent_knn_score`): how close E[z|x] lies to the training rows';
- the latent local outlier factor (`latent.latent_lof_score`): how much sparser the codes around E[z|x] are than
  around its nearest training codes. It catches a held-out class whose codes fall near a tight normal class, as
  Fashion-MNIST's sneakers near the sandals and ankle boots, where the plain distance ranks them as normal;
- the latent mixture density (`mixture.latent_gmm_score`): the log density of E[z|x] under a Gaussian mixture
  fitted to the training codes, a global view of where they lie where the two above are local.

z_j(x) = (s_j(x) - median_j) / IQR_j with the median and interquartile range of part j over the training rows
(an IQR of 0 counts as 1), and the score is the sum of the z_j: unitless, higher = more normal. The first three
parts were chosen on one seed of one-class-out MNIST and Fashion-MNIST and confirmed on two others, the fourth
and the fifth each chosen on one and confirmed on two (docs/benchmarks/anomaly_notes.md, "Three scores,
standardised and added", "`score="combined"`, the image default", "The local outlier factor in the latent space"
and "A mixture density in the latent space"). A standardisation of fewer entries (detectors saved before the later
parts, persistence versions 6 and 7) scores with that many first parts, which need only what `needs` says.
"""

from __future__ import annotations

import numpy as np
import torch

from ..evaluate import log_likelihood
from ..model import VAE
from .complexity import complexity_corrected
from .latent import NEIGHBOURS_DEFAULT, codes_of, lof_score, nearest
from .mixture import log_density

PARTS = ("log-likelihood", "complexity-1", "latent-knn", "latent-lof", "latent-gmm")
"""The parts, in the order of `parts`' rows and of the standardisation's entries."""
PART_NEEDS: dict[str, tuple[str, ...]] = {
    "log-likelihood": (),
    "complexity-1": ("code_bits",),
    "latent-knn": ("reference",),
    "latent-lof": ("reference", "density"),
    "latent-gmm": ("reference", "mixture"),
}
"""What each part takes from the detector, in the names of `scores.NEEDS`."""


def needs(count: int = len(PARTS)) -> tuple[str, ...]:
    """What the combined score of the first `count` parts takes (`scores.NEEDS`' names): its parts' needs and its
    standardisation."""
    names = [n for part in PARTS[:count] for n in PART_NEEDS[part]] + ["standardised"]
    return tuple(dict.fromkeys(names))


COMPLEXITY_WEIGHT = 1.0
"""mu of the complexity part, log p(x) + mu L(x) ln 2: Serra et al.'s full correction."""


def parts(
    model: VAE,
    x: torch.Tensor,
    samples: int,
    seed: int = 0,
    batch_size: int = 500,
    *,
    code_bits: torch.Tensor,
    reference: torch.Tensor,
    density: torch.Tensor | None = None,
    mixture: torch.Tensor | None = None,
    exclude_self: bool = False,
    count: int = len(PARTS),
    searched: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The first `count` parts of PARTS for the rows x, (count, N) float64: log p(x) in nats (k = `samples`),
    c_1(x) in nats (`code_bits` (N,) the PNG code lengths), minus the latent 5-nearest-neighbour distance to
    `reference`, minus the log local outlier factor among it (`density` = `latent.local_density(reference)`; None
    where count < 4) and the log density under `mixture` (`mixture.fit_mixture(reference)`; None where count < 5);
    exclude_self: x are the rows `reference` was encoded from. One neighbour search serves both neighbour parts;
    `searched`: that search's result (`latent.nearest` of the rows, 5 neighbours), where the caller has made it."""
    # scores.log_likelihood_score: the importance-sampled log p(x)
    log_p = log_likelihood(model, x, k=samples, batch_size=batch_size, seed=seed, shared_noise=True).double()
    c_1 = complexity_corrected(log_p, torch.as_tensor(code_bits, dtype=torch.float64), COMPLEXITY_WEIGHT)
    codes = codes_of(model, x, reference, exclude_self)
    if searched is None:
        searched = nearest(reference, codes, NEIGHBOURS_DEFAULT, exclude_self)
    distances, indices = searched
    # latent.latent_knn_score and latent.latent_lof_score from the one search, mixture.latent_gmm_score
    values = [log_p, c_1, -distances.mean(1)]
    if count > 3:
        values.append(lof_score(density, distances, indices))
    if count > 4:
        values.append(log_density(mixture, codes))
    return torch.stack(values[:count])


def standardisation(train_parts: torch.Tensor) -> torch.Tensor:
    """(2, P) float64: each part's median over the training rows (row 0) and its interquartile range, 1 where
    that is 0 or not finite (row 1), from `parts` of the training rows (P, N)."""
    a = train_parts.double().numpy()
    q1, q2, q3 = np.percentile(a, [25, 50, 75], axis=1)
    iqr = q3 - q1
    return torch.from_numpy(np.stack([q2, np.where(np.isfinite(iqr) & (iqr > 0), iqr, 1.0)]))


def standardised_sum(row_parts: torch.Tensor, location_scale: torch.Tensor) -> torch.Tensor:
    """sum_j (part_j - median_j) / IQR_j, (N,) float64, for `parts` (P, N) and a `standardisation` (2, P)."""
    location, scale = location_scale[0].unsqueeze(1), location_scale[1].unsqueeze(1)
    return ((row_parts.double() - location) / scale).sum(0)


def combined_score(
    model: VAE,
    x: torch.Tensor,
    samples: int,
    seed: int = 0,
    batch_size: int = 500,
    *,
    code_bits: torch.Tensor,
    reference: torch.Tensor,
    density: torch.Tensor | None = None,
    standardised: torch.Tensor,
    mixture: torch.Tensor | None = None,
    exclude_self: bool = False,
    searched: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The combined score of the rows x, (N,) float64, unitless, higher = more normal: `standardised_sum` of
    their `parts` under the training rows' `standardisation` (`standardised`, (2, P)): the first P of PARTS;
    `searched` as for `parts`."""
    p = parts(
        model, x, samples, seed, batch_size, code_bits=code_bits, reference=reference, density=density,
        mixture=mixture, exclude_self=exclude_self, count=standardised.shape[1], searched=searched,
    )  # fmt: skip
    return standardised_sum(p, standardised)
