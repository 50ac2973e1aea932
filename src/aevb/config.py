"""Run configuration: flat frozen dataclasses, stored as JSON in every run directory.

`ModelConfig` alone rebuilds the network (`VAE(ModelConfig)`); `TrainConfig` says how it was
trained. Every field maps one-to-one onto an `aevb train` flag of the same name. Fields that name a
part are checked against that part's dict, the one list of its names: `arch` against
`aevb.nets.ARCHS`, `prior` against `aevb.priors.PRIORS`, `flow` against
`aevb.flows.FLOWS`, `objective` against
`aevb.objectives.OBJECTIVES`, `optimizer` against `aevb.optimizers.OPTIMIZERS`, `gradient` against
`aevb.gradients.GRADIENTS`, `lr_schedule` against `aevb.schedules.LR_SCHEDULES`, `recipe` against
`aevb.recipes.RECIPES` (those modules, and the model they build, do not import this one when they run).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .custom import CUSTOM, IMPORT_PATH
from .errors import CheckpointError
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

CONFIG_VERSION = 1

ACTIVATIONS = ("tanh", "relu")
INITS = ("default", "normal", "glorot")
ESTIMATORS = ("analytic", "mc")  # SGVB estimator B (analytic KL) and A (Monte Carlo KL)
BINARIZE = ("auto", "dynamic", "static", "none")
DEVICES = ("auto", "cpu", "cuda")
NONFINITE = ("stop", "skip")  # what a step with a NaN/inf loss or gradient does
COMPILE = ("off", "on")  # torch.compile of the training objective
PRECISIONS = ("fp32", "bf16")  # bf16: autocast of the networks; densities, KL and noise stay fp32
CONDITIONS = ("none", "labels")  # labels: a conditional VAE, p(x|z, y) and q(z|x, y) (Sohn et al. 2015)
# Fields that say how long the run trains and how often it is saved: `--resume` may change them.
RESUMABLE_FIELDS = ("epochs", "checkpoint_every", "checkpoint_minutes", "time_limit")


@dataclass(frozen=True)
class ModelConfig:
    """The generative model p(z) p(x|z) and the encoder q(z|x)."""

    data_shape: tuple[int, ...] = (8, 8)  # per-example shape; the networks see it flattened
    latent_dim: int = 2  # size of z (one layer); with `latents`, z_1's size latents[0] (set from it)
    latents: tuple[int, ...] = ()  # stochastic layer sizes z_1 .. z_L, bottom first (); () = one layer of latent_dim
    latent_hidden: tuple[int, ...] = ()  # MLP hidden sizes between z_l and z_{l+1}; () = (d_l, d_l) (Burda et al.)
    inference: str = "bottom-up"  # q of a stack: "bottom-up" (Burda et al. 2016) or "ladder" (Sonderby et al. 2016)
    hidden: tuple[int, ...] = (200,)
    activation: str = "tanh"
    likelihood: str = "bernoulli"  # a name of aevb.likelihoods.LIKELIHOODS
    sigma: float = 1.0  # standard deviation of the fixed `gaussian` likelihood
    logvar_min: float = -9.0  # clamp of the `gaussian-learned` log-variance (sigma in [0.011, 20])
    logvar_max: float = 6.0
    df: float = 5.0  # degrees of freedom of the student-t likelihood (larger: closer to gaussian-learned)
    outlier_weight: float = 0.2  # weight of the gaussian-robust likelihood's Cauchy(0, 1) background
    init: str = "default"  # "normal": every weight and bias ~ N(0, init_std^2), as in the paper
    init_std: float = 0.01
    arch: str = "mlp"  # "conv": strided convolutions for images; "resmlp": residual MLP (equal hidden sizes)
    channels: tuple[int, ...] = (32, 64)  # conv: channels of the stride-2 convolutions (the decoder mirrors them)
    prior: str = "normal"  # p(z): "normal" N(0, I); "mog" a learned Gaussian mixture; "vamp" the VampPrior
    prior_components: int = 10  # mog: mixture components; vamp: pseudo-inputs
    categories: int = 0  # categorical likelihood: classes C, every column holds an index 0..C-1 (0: not used)
    columns: str = (
        ""  # mixed likelihood: "KIND:N,..." groups of N consecutive columns, e.g. "gaussian:3,categorical4:1"
    )
    condition_on: str = "none"  # "labels": encoder and decoder also see the one-hot label y (a conditional VAE)
    classes: int = 0  # condition_on labels: label classes 0..classes-1 (0: resolved from the training labels)
    standardize: bool = False  # the model sees (x - mean) / std of the training set; densities stay in x's units
    flow: str = "none"  # q(z|x): "none" the diagonal Gaussian; "iaf" inverse autoregressive flow on it (each layer's)
    flow_steps: int = 2  # iaf: steps T, each a MADE network; the variable order is reversed between steps
    flow_hidden: tuple[int, ...] = (320, 320)  # iaf: hidden layer sizes of each step's MADE
    flow_context: int = 64  # iaf: size of the context h(x) the encoder emits beside mu and log sigma^2
    module: str = ""  # your own networks (aevb.custom): "pkg.mod:build" or "custom"; "" = the in-tree `arch`

    def __post_init__(self) -> None:
        _check_types(self)
        _check_choice("arch", self.arch, ARCHS)
        _check_choice("prior", self.prior, PRIORS)
        _check_choice("condition_on", self.condition_on, CONDITIONS)
        _check_choice("flow", self.flow, FLOWS)
        _check(
            self.module in ("", CUSTOM) or re.match(IMPORT_PATH, self.module) is not None,
            f"module must be an import path PKG.MOD:FUNCTION (or '{CUSTOM}', or '' for the in-tree networks); "
            f"got {self.module!r}"[:200],
        )
        _check(self.flow_steps >= 1, f"flow_steps must be >= 1, got {self.flow_steps}")
        _check(len(self.flow_hidden) >= 1 and all(h >= 1 for h in self.flow_hidden), "flow_hidden sizes must be >= 1")
        _check(self.flow_context >= 1, f"flow_context must be >= 1, got {self.flow_context}")
        _check(
            not (self.flow != "none" and self.prior == "vamp"),
            "--prior vamp is a mixture of the diagonal Gaussian posterior at its pseudo-inputs: use --flow none, "
            "or --prior normal or mog with a flow",
        )
        _check_layers(self)
        _check(self.classes >= 0, "classes must be >= 0")
        _check(self.condition_on == "labels" or self.classes == 0, "classes is only for --condition-on labels (else 0)")
        _check(
            not (self.condition_on == "labels" and self.prior == "vamp"),
            "--prior vamp cannot be conditioned on labels (its pseudo-inputs have none): use --prior normal or mog",
        )
        _check(all(c >= 1 for c in self.channels) and len(self.channels) >= 1, "channels must be >= 1")
        _check(self.prior_components >= 1, "prior_components must be >= 1")
        _check(
            self.categories >= 2 if self.likelihood == "categorical" else self.categories == 0,
            "likelihood categorical needs categories >= 2 (the classes 0..C-1 of every column); "
            "categories is 0 for the other likelihoods",
        )
        _check(bool(self.columns) == (self.likelihood == "mixed"), "likelihood mixed needs columns, and only it")
        if self.columns:  # that the groups cover the data's D columns is checked against the data (preprocess)
            parse_columns(self.columns)
            _check(self.arch != "conv", "likelihood mixed is for tables: use --arch mlp or resmlp")
        _check_choice("likelihood", self.likelihood, tuple(LIKELIHOODS))
        _check(
            not self.standardize or make_likelihood(self).location_scale,
            f"standardize is for the likelihoods {', '.join(standardizable(self))} (location-scale families)",
        )
        _check(self.arch != "conv" or len(self.data_shape) in (2, 3), "arch conv needs image data, (H, W) or (C, H, W)")
        _check(
            self.arch != "resmlp" or (len(self.hidden) >= 1 and len(set(self.hidden)) == 1),
            "arch resmlp needs equal hidden sizes (e.g. --hidden 256 256: two residual blocks of width 256)",
        )
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("init", self.init, INITS)
        _check(self.latent_dim >= 1, "latent_dim must be >= 1")
        _check(all(h >= 1 for h in self.hidden), "hidden sizes must be >= 1")
        _check(len(self.data_shape) >= 1 and all(s >= 1 for s in self.data_shape), "bad data_shape")
        _check(self.sigma > 0, "sigma must be > 0")
        _check(self.df > 0, "df must be > 0")
        _check(0 < self.outlier_weight < 1, "outlier_weight must be in (0, 1)")
        _check(self.logvar_min < self.logvar_max, "logvar_min must be < logvar_max")
        _check(self.init_std > 0, "init_std must be > 0")

    @property
    def layers(self) -> tuple[int, ...]:
        """The stochastic layers' sizes, bottom first: `latents`, or (latent_dim,) for one layer."""
        return tuple(self.latents) or (self.latent_dim,)

    @property
    def conditional(self) -> bool:
        """Whether p(x|z, y) and q(z|x, y) take a label y (`condition_on` labels)."""
        return self.condition_on == "labels"

    @property
    def data_dim(self) -> int:
        n = 1
        for s in self.data_shape:
            n *= s
        return n


@dataclass(frozen=True)
class TrainConfig:
    """How the parameters are fitted: data, objective, optimiser, schedule."""

    dataset: str = "digits"  # a built-in name or a .npy/.npz/.csv path
    objective: str = "elbo"
    estimator: str = "analytic"
    samples: int = 1  # L, Monte Carlo samples per point for the ELBO
    k: int = 5  # importance samples per point for the IWAE objective
    batch_size: int = 100  # M
    epochs: int = 100
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    binarize: str = "auto"  # resolved before training: dynamic for bernoulli on grey levels, else none
    seed: int = 0
    device: str = "auto"
    eval_k: int = 5000  # importance samples for the test log-likelihood of `aevb eval`
    nonfinite: str = "stop"  # "skip": drop steps with a NaN/inf loss or gradient, counted in the metrics
    checkpoint_every: int = 0  # also checkpoint every this many steps (0: only by time and at epoch ends)
    checkpoint_minutes: float = 5.0  # also checkpoint when this much time passed since the last one (0: off)
    time_limit: float = 0.0  # minutes of training (all resumes together) after which the run stops, saved (0: off)
    compile: str = "off"  # "on": torch.compile the objective (forward and backward); see aevb.speed
    precision: str = "fp32"  # "bf16": the networks run under bfloat16 autocast; densities stay fp32
    beta: float = 1.0  # weight of the KL term in the training objective (beta-VAE); 1 = the ELBO
    kl_warmup: float = 0.0  # epochs over which the KL weight ramps linearly from 0 to beta (0: off)
    free_bits: float = 0.0  # nats per latent dimension below which the KL is not penalised (0: off)
    gradient: str = "standard"  # the encoder's gradient estimator: "stl" or "dreg" (aevb.gradients)
    lr_schedule: str = "constant"  # the learning rate per step (aevb.schedules): burda, cosine, linear
    lr_final: float = 0.0  # the learning rate that the cosine and linear schedules reach at `epochs`
    adam_beta1: float = 0.9  # Adam's decay of the mean of the gradients
    adam_beta2: float = 0.999  # Adam's decay of the mean of their squares
    adam_eps: float = 1e-8  # Adam's epsilon (Burda et al. 2016: 1e-4)
    recipe: str = ""  # the published setup (aevb.recipes) this run's fields started from ("": none)
    tensorboard: bool = False  # also write the metrics as TensorBoard scalars into RUN/tensorboard/ (aevb.board)

    def __post_init__(self) -> None:
        _check_types(self)
        _check_choice("objective", self.objective, OBJECTIVES)
        _check_choice("gradient", self.gradient, GRADIENTS)
        _check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _check(self.recipe == "" or self.recipe in RECIPES, f"recipe must be '' or one of {', '.join(RECIPES)}")
        _check_choice("estimator", self.estimator, ESTIMATORS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("binarize", self.binarize, BINARIZE)
        _check_choice("device", self.device, DEVICES)
        _check_choice("nonfinite", self.nonfinite, NONFINITE)
        _check_choice("compile", self.compile, COMPILE)
        _check_choice("precision", self.precision, PRECISIONS)
        _check(self.checkpoint_every >= 0, "checkpoint_every must be >= 0")
        _check(self.checkpoint_minutes >= 0, "checkpoint_minutes must be >= 0")
        _check(0 <= self.time_limit < math.inf, "time_limit must be a number of minutes >= 0 (0: no limit)")
        for name in ("samples", "k", "batch_size", "eval_k"):
            _check(getattr(self, name) >= 1, f"{name} must be >= 1")
        _check(self.epochs >= 0, "epochs must be >= 0")
        _check(self.lr > 0, "lr must be > 0")
        _check(self.weight_decay >= 0, "weight_decay must be >= 0")
        _check(min(self.beta, self.kl_warmup, self.free_bits) >= 0, "beta, kl_warmup, free_bits must be >= 0")
        _check(
            self.objective == "elbo" or (self.beta == 1 and self.kl_warmup == 0 and self.free_bits == 0),
            "beta, kl_warmup and free_bits apply to --objective elbo",
        )
        _check(self.lr_final >= 0, "lr_final must be >= 0")
        _check(
            self.lr_final == 0 or self.lr_schedule in ("cosine", "linear"),
            "lr_final is the end of --lr-schedule cosine or linear",
        )
        _check(0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1, "adam_beta1 and adam_beta2 must be in [0, 1)")
        _check(self.adam_eps > 0, "adam_eps must be > 0")
        _check(
            self.optimizer == "adam" or (self.adam_beta1, self.adam_beta2, self.adam_eps) == (0.9, 0.999, 1e-8),
            "adam_beta1, adam_beta2 and adam_eps apply to --optimizer adam",
        )
        _check(
            self.gradient != "dreg" or self.objective == "iwae",
            "--gradient dreg is for --objective iwae (at k = 1, the ELBO, it is stl: use --gradient stl)",
        )
        _check(
            self.gradient != "stl" or self.objective == "iwae" or (self.estimator == "mc" and not self.regularised),
            "--gradient stl with --objective elbo needs --estimator mc (the analytic KL has no score term) "
            "and no beta, warm-up or free bits",
        )

    @property
    def regularised(self) -> bool:
        """True when the training objective is not the plain bound (beta, warm-up or free bits)."""
        return self.beta != 1 or self.kl_warmup > 0 or self.free_bits > 0


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
            _check((whole(v) or isinstance(v, float)), f"{f.name} must be a number, got {v!r}"[:120])
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
    if not c.latents:
        return
    default = next(f.default for f in dataclasses.fields(c) if f.name == "latent_dim")
    _check(
        c.latent_dim in (default, c.latents[0]),
        f"latent_dim {c.latent_dim} disagrees with latents {list(c.latents)}: latents sets every layer "
        f"(z_1 has {c.latents[0]}); give one of them",
    )
    object.__setattr__(c, "latent_dim", c.latents[0])
    if len(c.latents) > 1:
        _check(c.prior == "normal", "a stack of latents has the prior N(0, I) on its top layer: use --prior normal")
        _check(not c.conditional, "a stack of latents cannot be conditioned on labels (yet): use one layer")


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


def _check_choice(name: str, value: str, choices: Iterable[str]) -> None:
    _check(value in choices, f"{name} must be one of {', '.join(choices)}; got {value!r}")


def to_dict(model: ModelConfig, train: TrainConfig | None = None) -> dict[str, Any]:
    """The JSON-ready form of a run's configuration, with the format version."""
    out: dict[str, Any] = {"version": CONFIG_VERSION, "model": dataclasses.asdict(model)}
    if train is not None:
        out["train"] = dataclasses.asdict(train)
    return out


def from_dict(d: dict[str, Any]) -> tuple[ModelConfig, TrainConfig | None]:
    """Inverse of `to_dict`; raises CheckpointError on an unknown version or unknown fields."""
    if not isinstance(d, dict) or "version" not in d:
        raise CheckpointError("config has no 'version' field; not an aevb config")
    if d["version"] != CONFIG_VERSION:
        raise CheckpointError(
            f"config version {d['version']!r} is not supported (this aevb reads version {CONFIG_VERSION})"
        )
    try:
        m = dict(d["model"])
        m["data_shape"] = tuple(m["data_shape"])
        m["hidden"] = tuple(m["hidden"])
        for key in ("channels", "flow_hidden"):
            if key in m:
                m[key] = tuple(m[key])
        model = ModelConfig(**m)
        train = TrainConfig(**d["train"]) if d.get("train") is not None else None
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"config is invalid: {e}") from None
    return model, train
