"""What a valid config is: the names each string field may take, each field's type, and the rules
between fields. `ModelConfig` and `TrainConfig` (aevb.config) call `check_model` and `check_train` when
they are made, so that a config from flags, a JSON file or Python is checked once, here.

Fields that name a part are checked against that part's dict, the one list of its names: `arch` against
`aevb.nets.ARCHS`, `prior` against `aevb.priors.PRIORS`, `flow` against `aevb.flows.FLOWS`, `objective`
against `aevb.objectives.OBJECTIVES`, `optimizer` against `aevb.optimizers.OPTIMIZERS`, `gradient` against
`aevb.gradients.GRADIENTS`, `lr_schedule` against `aevb.schedules.LR_SCHEDULES`, `recipe` against
`aevb.recipes.RECIPES` (those modules, and the model they build, do not import config when they run).
The other string fields take the names below (the CLI offers the same as choices).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .custom import CUSTOM, IMPORT_PATH
from .flows import FLOWS
from .gradients import GRADIENTS
from .hierarchy import INFERENCE
from .likelihoods import LIKELIHOODS, make_likelihood, parse_columns, standardizable
from .nets import ARCHS
from .objectives import OBJECTIVES
from .optimizers import OPTIMIZERS
from .priors import PRIORS
from .recipes import RECIPES
from .schedules import LR_SCHEDULES

if TYPE_CHECKING:  # config calls the checks below when its dataclasses are made
    from .config import ModelConfig, TrainConfig

ACTIVATIONS = ("tanh", "relu")
INITS = ("default", "normal", "glorot")
ESTIMATORS = ("analytic", "mc")  # SGVB estimator B (analytic KL) and A (Monte Carlo KL)
BINARIZE = ("auto", "dynamic", "static", "none")
DEVICES = ("auto", "cpu", "cuda")
NONFINITE = ("stop", "skip")  # what a step with a NaN/inf loss or gradient does
COMPILE = ("off", "on")  # torch.compile of the training objective
PRECISIONS = ("fp32", "bf16")  # bf16: autocast of the networks; densities, KL and noise stay fp32
CONDITIONS = ("none", "labels")  # labels: a conditional VAE, p(x|z, y) and q(z|x, y) (Sohn et al. 2015)


def check_model(c: ModelConfig) -> None:
    """ValueError (one line) unless every field of `c` is valid and the fields agree; tuples given as lists
    become tuples, and latent_dim becomes latents[0] for a stack."""
    _check_types(c)
    _check_choice("arch", c.arch, ARCHS)
    _check_choice("prior", c.prior, PRIORS)
    _check_choice("condition_on", c.condition_on, CONDITIONS)
    _check_choice("flow", c.flow, FLOWS)
    _check(
        c.module in ("", CUSTOM) or re.match(IMPORT_PATH, c.module) is not None,
        f"module must be an import path PKG.MOD:FUNCTION (or '{CUSTOM}', or '' for the in-tree networks); "
        f"got {c.module!r}"[:200],
    )
    _check(c.flow_steps >= 1, f"flow_steps must be >= 1, got {c.flow_steps}")
    _check(len(c.flow_hidden) >= 1 and all(h >= 1 for h in c.flow_hidden), "flow_hidden sizes must be >= 1")
    _check(c.flow_context >= 1, f"flow_context must be >= 1, got {c.flow_context}")
    _check(
        not (c.flow != "none" and c.prior == "vamp"),
        "--prior vamp is a mixture of the diagonal Gaussian posterior at its pseudo-inputs: use --flow none, "
        "or --prior normal or mog with a flow",
    )
    _check_layers(c)
    _check(c.classes >= 0, "classes must be >= 0")
    _check(c.condition_on == "labels" or c.classes == 0, "classes is only for --condition-on labels (else 0)")
    _check(
        not (c.condition_on == "labels" and c.prior == "vamp"),
        "--prior vamp cannot be conditioned on labels (its pseudo-inputs have none): use --prior normal or mog",
    )
    _check(all(n >= 1 for n in c.channels) and len(c.channels) >= 1, "channels must be >= 1")
    _check(c.prior_components >= 1, "prior_components must be >= 1")
    _check(
        c.categories >= 2 if c.likelihood == "categorical" else c.categories == 0,
        "likelihood categorical needs categories >= 2 (the classes 0..C-1 of every column); "
        "categories is 0 for the other likelihoods",
    )
    _check(bool(c.columns) == (c.likelihood == "mixed"), "likelihood mixed needs columns, and only it")
    if c.columns:  # that the groups cover the data's D columns is checked against the data (preprocess)
        parse_columns(c.columns)
        _check(c.arch != "conv", "likelihood mixed is for tables: use --arch mlp or resmlp")
    _check_choice("likelihood", c.likelihood, tuple(LIKELIHOODS))
    _check(
        not c.standardize or make_likelihood(c).location_scale,
        f"standardize is for the likelihoods {', '.join(standardizable(c))} (location-scale families)",
    )
    _check(c.arch != "conv" or len(c.data_shape) in (2, 3), "arch conv needs image data, (H, W) or (C, H, W)")
    _check(
        c.arch != "resmlp" or (len(c.hidden) >= 1 and len(set(c.hidden)) == 1),
        "arch resmlp needs equal hidden sizes (e.g. --hidden 256 256: two residual blocks of width 256)",
    )
    _check_choice("activation", c.activation, ACTIVATIONS)
    _check_choice("init", c.init, INITS)
    _check(c.latent_dim >= 1, "latent_dim must be >= 1")
    _check(all(h >= 1 for h in c.hidden), "hidden sizes must be >= 1")
    _check(len(c.data_shape) >= 1 and all(s >= 1 for s in c.data_shape), "bad data_shape")
    _check(c.sigma > 0, "sigma must be > 0")
    _check(c.df > 0, "df must be > 0")
    _check(0 < c.outlier_weight < 1, "outlier_weight must be in (0, 1)")
    _check(c.logvar_min < c.logvar_max, "logvar_min must be < logvar_max")
    _check(c.init_std > 0, "init_std must be > 0")


def check_train(c: TrainConfig) -> None:
    """ValueError (one line) unless every field of `c` is valid and the fields agree."""
    _check_types(c)
    _check_choice("objective", c.objective, OBJECTIVES)
    _check_choice("gradient", c.gradient, GRADIENTS)
    _check_choice("lr_schedule", c.lr_schedule, LR_SCHEDULES)
    _check(c.recipe == "" or c.recipe in RECIPES, f"recipe must be '' or one of {', '.join(RECIPES)}")
    _check_choice("estimator", c.estimator, ESTIMATORS)
    _check_choice("optimizer", c.optimizer, OPTIMIZERS)
    _check_choice("binarize", c.binarize, BINARIZE)
    _check_choice("device", c.device, DEVICES)
    _check_choice("nonfinite", c.nonfinite, NONFINITE)
    _check_choice("compile", c.compile, COMPILE)
    _check_choice("precision", c.precision, PRECISIONS)
    _check(c.checkpoint_every >= 0, "checkpoint_every must be >= 0")
    _check(c.checkpoint_minutes >= 0, "checkpoint_minutes must be >= 0")
    _check(0 <= c.time_limit < math.inf, "time_limit must be a number of minutes >= 0 (0: no limit)")
    for name in ("samples", "k", "batch_size", "eval_k"):
        _check(getattr(c, name) >= 1, f"{name} must be >= 1")
    _check(c.epochs >= 0, "epochs must be >= 0")
    _check(c.lr > 0, "lr must be > 0")
    _check(c.weight_decay >= 0, "weight_decay must be >= 0")
    _check(min(c.beta, c.kl_warmup, c.free_bits) >= 0, "beta, kl_warmup, free_bits must be >= 0")
    _check(
        c.objective == "elbo" or (c.beta == 1 and c.kl_warmup == 0 and c.free_bits == 0),
        "beta, kl_warmup and free_bits apply to --objective elbo",
    )
    _check(c.lr_final >= 0, "lr_final must be >= 0")
    _check(
        c.lr_final == 0 or c.lr_schedule in ("cosine", "linear"),
        "lr_final is the end of --lr-schedule cosine or linear",
    )
    _check(0 <= c.lr_minutes < math.inf, "lr_minutes must be a number of minutes >= 0 (0: decay over epochs)")
    _check(
        c.lr_minutes == 0 or c.lr_schedule in ("cosine", "linear"),
        "lr_minutes stretches --lr-schedule cosine or linear over training minutes",
    )
    _check(0 <= c.adam_beta1 < 1 and 0 <= c.adam_beta2 < 1, "adam_beta1 and adam_beta2 must be in [0, 1)")
    _check(c.adam_eps > 0, "adam_eps must be > 0")
    _check(
        c.optimizer == "adam" or (c.adam_beta1, c.adam_beta2, c.adam_eps) == (0.9, 0.999, 1e-8),
        "adam_beta1, adam_beta2 and adam_eps apply to --optimizer adam",
    )
    _check(
        c.gradient != "dreg" or c.objective == "iwae",
        "--gradient dreg is for --objective iwae (at k = 1, the ELBO, it is stl: use --gradient stl)",
    )
    _check(
        c.gradient != "stl" or c.objective == "iwae" or (c.estimator == "mc" and not c.regularised),
        "--gradient stl with --objective elbo needs --estimator mc (the analytic KL has no score term) "
        "and no beta, warm-up or free bits",
    )


def _check_types(config: Any) -> None:
    """Each field has the type of its default (ints are taken for floats): configs come from JSON files."""
    for f in dataclasses.fields(config):
        v, default = getattr(config, f.name), f.default
        whole = lambda u: isinstance(u, int) and not isinstance(u, bool)  # noqa: E731
        if isinstance(default, tuple):
            ok = isinstance(v, (tuple, list)) and all(whole(u) for u in v)
            if ok:
                object.__setattr__(config, f.name, tuple(v))
            _check(ok, f"{f.name} must be a list of whole numbers, got {v!r}"[:120])
        elif isinstance(default, bool):
            _check(isinstance(v, bool), f"{f.name} must be true or false, got {v!r}"[:120])
        elif isinstance(default, float):
            number = (whole(v) or isinstance(v, float)) and math.isfinite(v)
            _check(number, f"{f.name} must be a finite number, got {v!r}"[:120])
            object.__setattr__(config, f.name, float(v))
        elif isinstance(default, int):
            _check(whole(v), f"{f.name} must be a whole number, got {v!r}"[:120])
        elif isinstance(default, str):
            _check(isinstance(v, str), f"{f.name} must be a string, got {v!r}"[:120])


def _check_layers(c: ModelConfig) -> None:
    """`latents`, `latent_hidden` and `inference` are consistent; latent_dim becomes z_1's size latents[0]
    when left at its default (a different latent_dim is an error: it would name another z_1)."""
    _check_choice("inference", c.inference, INFERENCE)
    _check(all(d >= 1 for d in c.latents), f"latents (layer sizes) must be >= 1, got {list(c.latents)}")
    _check(all(h >= 1 for h in c.latent_hidden), "latent_hidden sizes must be >= 1")
    _check(
        c.inference == _default(c, "inference") or len(c.latents) > 1,
        f"inference {c.inference} is for a stack of latents (--latents A B ...); one layer has no top-down pass",
    )
    if not c.latents:
        return
    _check(
        c.latent_dim in (_default(c, "latent_dim"), c.latents[0]),
        f"latent_dim {c.latent_dim} disagrees with latents {list(c.latents)}: latents sets every layer "
        f"(z_1 has {c.latents[0]}); give one of them",
    )
    object.__setattr__(c, "latent_dim", c.latents[0])
    if len(c.latents) > 1:
        _check(c.prior == "normal", "a stack of latents has the prior N(0, I) on its top layer: use --prior normal")
        _check(not c.conditional, "a stack of latents cannot be conditioned on labels (yet): use one layer")


def _default(config: Any, name: str) -> Any:
    """The default of the field `name` of a config dataclass."""
    return next(f.default for f in dataclasses.fields(config) if f.name == name)


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


def _check_choice(name: str, value: str, choices: Iterable[str]) -> None:
    _check(value in choices, f"{name} must be one of {', '.join(choices)}; got {value!r}")
