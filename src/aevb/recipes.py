"""Recipes: published training setups as data. `aevb train --recipe NAME` starts from one (a config
file and the flags given override it), `aevb train --recipe list` prints them, and the run's stored
TrainConfig names it (`recipe`), beside every field it set.

A recipe is one entry of `RECIPES`: a one-line description, the source, the published number it
reproduces (test log-likelihood in nats, or None), and the fields of `ModelConfig` ("model") and
`TrainConfig` ("train") it sets; every other field keeps its default. A new setup is one more entry.
"""

from __future__ import annotations

from typing import Any

BURDA = (
    "Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, ICLR, Section 5 and Table 1 "
    "(MNIST, dynamic binarisation, test log-likelihood with k = 5000)"
)

# aevb's own setup for a budget of 2 training hours, measured by benchmarks/likelihood.py: Burda et al.'s
# one-layer networks and IWAE k = 5, with what the benchmark showed to pay on a CPU: the DReG gradient (+0.48
# nats at the same passes, two seeds), minibatches of 100 (850 passes take about 92 minutes of one core of the
# project's machine, 6.5 s each, leaving room for a loaded machine) and one cosine decay over the whole budget.
# Measured there: -85.95 +- 0.23 nats (k = 5000, all 10,000 test images) after 99.8 training minutes; with
# --epochs 120, -87.97 +- 0.23 after 12.1 minutes.
AEVB_2H = (
    "aevb's time-to-likelihood benchmark, docs/benchmarks/likelihood.md: the run cand2h-iwae1l-k5-dreg-b100-cos "
    "and the DReG / standard-gradient pairs"
)

# aevb's setups for 15 minutes and one hour: aevb-2h's networks, objective and rates, made faster per pass
# with bf16 matrix products and torch.compile (3.5 to 4.8 s a pass of one core against 6.2 to 6.5 s in fp32,
# the notes of docs/benchmarks/likelihood.md), and the cosine decay stretched over the training minutes
# themselves (`lr_minutes`), so that it ends with the budget on a fast or a slow machine; `epochs` only caps
# the passes. Measured there on a machine running 1.4 to 1.7 times slower than its best: aevb-15m -88.15 +- 0.23
# nats after 130 passes, aevb-1h -86.18 +- 0.23 after 652 passes (k = 5000, all 10,000 test images); aevb-1h on
# both cores (OMP_NUM_THREADS=2, the runs aevb-1h-t2 and aevb-1h-t2-s1, training seeds 0 and 1): -85.82 +- 0.23
# after 1,045.9 passes and -85.72 +- 0.23 after 1,059.4 (3.4 s each).
AEVB_TIMED = (
    "aevb's time-to-likelihood benchmark, docs/benchmarks/likelihood.md: the runs aevb-15m-* and aevb-1h-* "
    "(--lr-minutes), after aevb-2h and the bf16 + torch.compile runs with decays over epochs"
)


# aevb's two-stochastic-layer setup for 2 hours: Burda et al.'s two-layer networks (below) with aevb-1h's
# training (IWAE k = 5, DReG, batch 100, Adam at 2e-3, bf16, torch.compile) and the cosine over 120 training
# minutes. Measured there on one core, beside another run on the other: -84.36 +- 0.23 nats after 807.5 passes
# (8.9 s each) in 120 minutes (k = 5000, all 10,000 test images), against aevb-2h's -85.95; on both cores
# (OMP_NUM_THREADS=2, the run moon2h-iwae2l-k5-dreg-bf16c-t2): -84.00 +- 0.23 after 1,302.7 passes (5.5 s each);
# training seed 1 of this recipe on both cores (the run aevb-2h-2l-t2-s1): -83.78 +- 0.22 after 1,353.5 passes.
AEVB_2H_2L = "aevb's time-to-likelihood benchmark, docs/benchmarks/likelihood.md: the run cand2h-iwae2l-k5-dreg-bf16c"

# Burda et al.'s one-stochastic-layer architecture and optimisation, Section 5: 784-200-200-50 with tanh
# (the decoder mirrors it), Bernoulli pixels, minibatches of 20, Adam with beta1 0.9, beta2 0.999 and
# epsilon 1e-4, 3^i epochs at 0.001 * 10^(-i/7) for i = 0..7 (3,280 passes), weights initialised by the
# heuristic of Glorot & Bengio (2010).
_BURDA_1L_MODEL: dict[str, Any] = {
    "init": "glorot",
    "hidden": (200, 200),
    "latent_dim": 50,
    "activation": "tanh",
    "likelihood": "bernoulli",
    "arch": "mlp",
    "prior": "normal",
}
# The two-stochastic-layer architecture (Section 5): 784-200-200-100 between x and z_1 and 100-100-50
# between z_1 and z_2 (the generative networks mirror them), tanh, the same optimisation.
_BURDA_2L_MODEL: dict[str, Any] = {
    **{k: v for k, v in _BURDA_1L_MODEL.items() if k != "latent_dim"},
    "latents": (100, 50),
    "latent_hidden": (100, 100),
    "inference": "bottom-up",
}
_BURDA_TRAIN: dict[str, Any] = {
    "dataset": "mnist",
    "binarize": "dynamic",
    "batch_size": 20,
    "epochs": 3280,
    "optimizer": "adam",
    "lr": 1e-3,
    "lr_schedule": "burda",
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_eps": 1e-4,
    "eval_k": 5000,
}

_AEVB_2H_TRAIN: dict[str, Any] = {
    **_BURDA_TRAIN,
    "objective": "iwae",
    "k": 5,
    "gradient": "dreg",
    "batch_size": 100,
    "epochs": 850,
    "lr": 2e-3,
    "lr_schedule": "cosine",
    "lr_final": 1e-5,
    "time_limit": 120.0,
}


def _timed(minutes: float) -> dict[str, Any]:
    """aevb-2h's training fields with bf16, torch.compile and a cosine decay over `minutes` training minutes."""
    timed = {"lr_minutes": minutes, "time_limit": minutes, "precision": "bf16", "compile": "on"}
    return {**_AEVB_2H_TRAIN, "epochs": 3280, **timed}


RECIPES: dict[str, dict[str, Any]] = {
    "burda-vae-1l": {
        "description": "VAE k=1 (the ELBO, Monte Carlo KL), 784-200-200-50 tanh, batch 20, Adam, 3,280 epochs",
        "source": BURDA,
        "published_nll": 86.76,
        "model": _BURDA_1L_MODEL,
        "train": {**_BURDA_TRAIN, "objective": "elbo", "estimator": "mc", "samples": 1},
    },
    "burda-iwae-1l-k5": {
        "description": "IWAE k=5, 784-200-200-50 tanh, batch 20, Adam, 3,280 epochs",
        "source": BURDA,
        "published_nll": 85.54,
        "model": _BURDA_1L_MODEL,
        "train": {**_BURDA_TRAIN, "objective": "iwae", "k": 5},
    },
    "burda-iwae-1l-k50": {
        "description": "IWAE k=50, 784-200-200-50 tanh, batch 20, Adam, 3,280 epochs",
        "source": BURDA,
        "published_nll": 84.78,
        "model": _BURDA_1L_MODEL,
        "train": {**_BURDA_TRAIN, "objective": "iwae", "k": 50},
    },
    "burda-vae-2l": {
        "description": "VAE k=1, stochastic layers 100-50 (784-200-200-100-100-50 tanh), batch 20, Adam, 3,280 epochs",
        "source": BURDA,
        "published_nll": 85.33,
        "model": _BURDA_2L_MODEL,
        "train": {**_BURDA_TRAIN, "objective": "elbo", "estimator": "mc", "samples": 1},
    },
    "burda-iwae-2l-k5": {
        "description": "IWAE k=5, two stochastic layers 100-50, batch 20, Adam, 3,280 epochs",
        "source": BURDA,
        "published_nll": 83.89,
        "model": _BURDA_2L_MODEL,
        "train": {**_BURDA_TRAIN, "objective": "iwae", "k": 5},
    },
    "burda-iwae-2l-k50": {
        "description": "IWAE k=50, two stochastic layers 100-50, batch 20, Adam, 3,280 epochs",
        "source": BURDA,
        "published_nll": 82.90,
        "model": _BURDA_2L_MODEL,
        "train": {**_BURDA_TRAIN, "objective": "iwae", "k": 50},
    },
    "aevb-2h": {
        "description": (
            "aevb's setup for 2 hours of training on a 2-core CPU: IWAE k=5 with the DReG encoder gradient, "
            "784-200-200-50 tanh, batch 100, Adam at 2e-3 decaying by a cosine to 1e-5 over 850 epochs, "
            "stopped after 120 training minutes"
        ),
        "source": AEVB_2H,
        "published_nll": None,
        "model": _BURDA_1L_MODEL,
        "train": _AEVB_2H_TRAIN,
    },
    "aevb-15m": {
        "description": (
            "aevb's setup for 15 minutes of one CPU core: aevb-2h (IWAE k=5, DReG, 784-200-200-50 tanh, batch "
            "100, Adam at 2e-3) in bf16 with torch.compile, the cosine to 1e-5 over the 15 training minutes"
        ),
        "source": AEVB_TIMED,
        "published_nll": None,
        "model": _BURDA_1L_MODEL,
        "train": _timed(15.0),
    },
    "aevb-1h": {
        "description": (
            "aevb's setup for one hour of one CPU core: aevb-2h (IWAE k=5, DReG, 784-200-200-50 tanh, batch "
            "100, Adam at 2e-3) in bf16 with torch.compile, the cosine to 1e-5 over the 60 training minutes"
        ),
        "source": AEVB_TIMED,
        "published_nll": None,
        "model": _BURDA_1L_MODEL,
        "train": _timed(60.0),
    },
    "aevb-2h-2l": {
        "description": (
            "aevb's two-stochastic-layer setup for 2 hours: Burda et al.'s networks 784-200-200-100 and 100-100-50 "
            "tanh with aevb-1h's training (IWAE k=5, DReG, batch 100, Adam at 2e-3, bf16, torch.compile), the "
            "cosine to 1e-5 over the 120 training minutes"
        ),
        "source": AEVB_2H_2L,
        "published_nll": None,
        "model": _BURDA_2L_MODEL,
        "train": _timed(120.0),
    },
}


def recipe_fields(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ModelConfig fields, TrainConfig fields) that recipe `name` sets, the latter naming it (`recipe`);
    KeyError for an unknown name."""
    r = RECIPES[name]
    return dict(r["model"]), {**r["train"], "recipe": name}
