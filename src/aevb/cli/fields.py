"""`aevb train`'s flags: one per config field, named after it, with its help text and its choices.

The choices of a field that names a part are the keys of that part's dict, as config checks them
(`aevb.config_checks`); `given` reads back the fields that a command line set.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .. import config as C
from .. import config_checks as checks
from ..flows import FLOWS
from ..gradients import GRADIENTS
from ..hierarchy import INFERENCE
from ..likelihoods import LIKELIHOODS, column_kinds, standardizable
from ..nets import ARCHS
from ..objectives import OBJECTIVES
from ..optimizers import OPTIMIZERS
from ..priors import PRIORS
from ..recipes import RECIPES
from ..schedules import LR_SCHEDULES

# Help for every config field; `aevb train` gets one flag per field, named after it.
FIELD_HELP = {
    "latent_dim": "size of the latent z (one stochastic layer; --latents gives a stack instead)",
    "latents": "sizes of a stack of stochastic layers z_1 .. z_L, bottom first, e.g. 100 50 (Burda et al. 2016's "
    "two-layer model with --hidden 200 200); none = one layer of --latent-dim; z_1's size replaces --latent-dim",
    "latent_hidden": "hidden sizes of the MLPs between z_l and z_{l+1} of --latents (the generative ones mirror "
    "them); none = two layers as wide as z_l (100 100 between z_1 = 100 and z_2 = 50)",
    "inference": "q(z|x) of --latents: bottom-up = q(z_1|x) q(z_2|z_1) ... (Burda et al. 2016); ladder = top-down "
    "inference sharing the generative path, precision-weighted with a bottom-up pass (Sonderby et al. 2016)",
    "hidden": "hidden layer sizes of the encoder MLP (the decoder mirrors them)",
    "activation": "hidden activation",
    "likelihood": f"p(x|z), a decoder head of aevb.likelihoods.LIKELIHOODS: {', '.join(LIKELIHOODS)} (each "
    "head's docstring there says what it models and how the decoder parameterises it); categorical needs "
    "--categories, mixed --columns",
    "sigma": "standard deviation of the fixed gaussian likelihood",
    "df": "degrees of freedom of --likelihood student-t (larger: closer to gaussian-learned)",
    "outlier_weight": "weight w of the Cauchy(0, 1) background of --likelihood gaussian-robust, in (0, 1)",
    "logvar_min": "lower clamp of the gaussian-learned log-variance",
    "logvar_max": "upper clamp of the gaussian-learned log-variance",
    "init": "weight init: torch's default, normal = N(0, init-std^2) for all weights as in the paper, or glorot = "
    "U(+-sqrt(6 / (fan-in + fan-out))) weights and zero biases (Glorot & Bengio 2010; Burda et al. 2016)",
    "init_std": "standard deviation of --init normal",
    "arch": "encoder/decoder networks: mlp (--hidden), conv (stride-2 convolutions with --channels, then --hidden; "
    "images), resmlp (residual MLP: one block per --hidden entry, all equal; tables)",
    "channels": "channels of the stride-2 convolutions of --arch conv (the decoder mirrors them)",
    "prior": "p(z): normal = N(0, I); mog = a learned mixture of --prior-components Gaussians; vamp = the VampPrior "
    "(Tomczak & Welling 2018) on --prior-components learned pseudo-inputs; the KL is then a Monte Carlo estimate",
    "prior_components": "mixture components of --prior mog, pseudo-inputs of --prior vamp",
    "categories": "classes C of --likelihood categorical (every column holds a class index 0..C-1); 0 = not used",
    "columns": "groups of consecutive columns of --likelihood mixed, KIND:N,... with KIND one of "
    f"{', '.join(column_kinds())}, categorical written categoricalC (class indices 0..C-1), "
    "e.g. gaussian-learned:3,categorical4:1,poisson:2",
    "condition_on": "labels = a conditional VAE: p(x|z, y) and q(z|x, y) see the one-hot class label y "
    "(the dataset's labels); `aevb sample --label Y` then draws from one class",
    "classes": "label classes 0..C-1 of --condition-on labels; 0 = from the data (largest label + 1)",
    "standardize": "tables: the networks see each feature minus its training mean over its training standard "
    "deviation (stored with the model); densities and samples stay in the data's own units. "
    f"For the location-scale likelihoods: {', '.join(standardizable(C.ModelConfig()))}",
    "flow": "q(z|x): none = the diagonal Gaussian; iaf = inverse autoregressive flow on top of it (Kingma et al. "
    "2016): --flow-steps MADE steps conditioned on an encoder context; log q(z|x) stays exact, the KL is then a "
    "Monte Carlo estimate; with --latents, one IAF per layer",
    "flow_steps": "steps of --flow iaf, per latent layer (the variable order is reversed between steps)",
    "flow_hidden": "hidden layer sizes of the MADE network of each --flow iaf step",
    "flow_context": "size of the context h(x) that the encoder (and, with --latents, each up net) emits for --flow iaf",
    "module": "your own networks: PKG.MOD:BUILD, the import path of build(config) -> (encoder, decoder), "
    "two torch.nn.Modules mapping rows as aevb.custom says (looked up from the current folder first); they "
    "replace --arch, --hidden and --channels, the likelihood, prior, flow and --latents above z_1 stay; "
    "none = the in-tree networks of --arch",
    "dataset": "built-in dataset (digits, mnist, fashion-mnist, binarized-mnist, frey-face) or a .npy/.npz/.csv file",
    "objective": "elbo (SGVB) or iwae (importance-weighted bound with --k samples)",
    "estimator": "SGVB estimator: analytic = B (closed-form KL; a stack's per layer where it has one), "
    "mc = A (Monte Carlo KL)",
    "samples": "L, samples of z per data point for the ELBO",
    "k": "importance samples per data point for --objective iwae",
    "batch_size": "minibatch size M",
    "epochs": "passes over the training set",
    "optimizer": "optimiser",
    "lr": "learning rate",
    "weight_decay": "L2 weight decay",
    "binarize": "auto = dynamic for bernoulli on grey levels, else none",
    "seed": "seed of the initialisation and of all training randomness",
    "device": "auto = cuda when available, else cpu",
    "eval_k": "importance samples for the test log-likelihood reported by `aevb eval`",
    "nonfinite": "a step whose loss or gradient is NaN/inf: stop (keep the last checkpoint) or skip it (counted)",
    "checkpoint_every": "also checkpoint every this many steps; 0 = only by time and at the end of each epoch",
    "checkpoint_minutes": "also checkpoint when this many minutes passed since the last checkpoint; 0 = off",
    "time_limit": "MINUTES of training after which the run stops with a checkpoint (exit 0), counted over all "
    "its resumes (optimiser steps only: validation, evaluation and start-up do not count); "
    "`--resume RUN --time-limit LONGER` continues it; 0 = no limit",
    "compile": "on = torch.compile the objective (forward and backward) into fused kernels; off = eager",
    "precision": "bf16 = the networks' matrix products in bfloat16 (autocast), densities and KL in fp32; "
    "see docs/benchmarks/speed.md for speed and quality",
    "beta": "weight of the KL term in the training objective (beta-VAE); 1 = the ELBO",
    "kl_warmup": "EPOCHS over which the KL weight ramps linearly from 0 to --beta (KL annealing); 0 = off",
    "tensorboard": "write each epoch's metrics as TensorBoard scalars into RUN/tensorboard/ "
    "(needs pip install aevb[tensorboard]; view with: tensorboard --logdir RUN)",
    "free_bits": "NATS per latent dimension (per example) below which the KL is not penalised; 0 = off",
    "gradient": "the encoder's gradient estimator of the same bound: standard; dreg = doubly reparameterised "
    "(Tucker et al. 2019; --objective iwae); stl = sticking the landing (Roeder et al. 2017; biased for k > 1); "
    "both for one layer or --latents, not --flow iaf",
    "lr_schedule": "learning rate per step: constant; burda = 3^i epochs at --lr * 10^(-i/7), i = 0..7 (Burda et "
    "al. 2016, 3,280 epochs); cosine or linear = decay from --lr to --lr-final over --epochs",
    "lr_final": "learning rate that --lr-schedule cosine or linear reaches at the last epoch",
    "lr_minutes": "MINUTES of training (all resumes together) over which --lr-schedule cosine or linear decays, "
    "instead of over --epochs, so that the decay fits a --time-limit on any machine (the rate then follows the "
    "clock: not bit for bit repeatable); 0 = over --epochs",
    "adam_beta1": "Adam's beta1 (decay of the gradients' mean)",
    "adam_beta2": "Adam's beta2 (decay of their squares' mean)",
    "adam_eps": "Adam's epsilon (Burda et al. 2016: 1e-4)",
    "recipe": f"start from a published setup, {', '.join(RECIPES)}; a --config file and flags override its "
    "fields; `list` prints them (stored as the run's recipe)",
}
# Choices of the string fields; those that name a part are the keys of its dict (as config checks them).
CHOICES = {
    "activation": checks.ACTIVATIONS,
    "likelihood": tuple(LIKELIHOODS),
    "init": checks.INITS,
    "objective": tuple(OBJECTIVES),
    "estimator": checks.ESTIMATORS,
    "optimizer": tuple(OPTIMIZERS),
    "binarize": checks.BINARIZE,
    "device": checks.DEVICES,
    "nonfinite": checks.NONFINITE,
    "compile": checks.COMPILE,
    "precision": checks.PRECISIONS,
    "arch": tuple(ARCHS),
    "prior": tuple(PRIORS),
    "flow": tuple(FLOWS),
    "condition_on": checks.CONDITIONS,
    "gradient": GRADIENTS,
    "lr_schedule": tuple(LR_SCHEDULES),
    "inference": INFERENCE,
}
MODEL_FIELDS = [
    f for f in dataclasses.fields(C.ModelConfig) if f.name != "data_shape"
]  # data_shape comes from the data
TRAIN_FIELDS = list(dataclasses.fields(C.TrainConfig))


def add_field(p: argparse.ArgumentParser, f: dataclasses.Field) -> None:
    """Add the flag --FIELD-NAME of config field `f` to `p`; its default None means "not given"."""
    flag = "--" + f.name.replace("_", "-")
    shown = " ".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
    shown = "none" if shown == "" else shown
    kw: dict[str, Any] = {"default": None, "help": f"{FIELD_HELP[f.name]} (default: {shown})"}
    if isinstance(f.default, bool):  # --standardize / --no-standardize
        kw["action"] = argparse.BooleanOptionalAction
        kw["help"] = f"{FIELD_HELP[f.name]} (default: {'on' if f.default else 'off'})"
    elif f.name in CHOICES:
        kw["choices"] = CHOICES[f.name]
    elif isinstance(f.default, tuple):  # hidden, channels
        kw.update(type=int, nargs="+", metavar=f.name[0].upper())
    else:
        kw["type"] = type(f.default)
    p.add_argument(flag, **kw)


def given(args: argparse.Namespace, fields: list[dataclasses.Field]) -> dict[str, Any]:
    """The config fields of `fields` that the command line set, lists as tuples."""
    out = {}
    for f in fields:
        v = getattr(args, f.name)
        if v is not None:
            out[f.name] = tuple(v) if isinstance(v, list) else v
    return out
