"""Run configuration: flat frozen dataclasses, stored as JSON in every run directory.

`ModelConfig` alone rebuilds the network (`VAE(ModelConfig)`); `TrainConfig` says how it was
trained. Every field maps one-to-one onto an `aevb train` flag of the same name. Each config is
checked when it is made (`aevb.config_checks`: the names a field may take, the fields' types, and the
rules between them); `to_dict` and `from_dict` are its versioned JSON form.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .config_checks import check_model, check_train
from .errors import CheckpointError

CONFIG_VERSION = 1

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
        check_model(self)

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
    lr_minutes: float = 0.0  # cosine/linear decay over this many training minutes, not `epochs` (0: epochs)
    adam_beta1: float = 0.9  # Adam's decay of the mean of the gradients
    adam_beta2: float = 0.999  # Adam's decay of the mean of their squares
    adam_eps: float = 1e-8  # Adam's epsilon (Burda et al. 2016: 1e-4)
    recipe: str = ""  # the published setup (aevb.recipes) this run's fields started from ("": none)
    tensorboard: bool = False  # also write the metrics as TensorBoard scalars into RUN/tensorboard/ (aevb.board)

    def __post_init__(self) -> None:
        check_train(self)

    @property
    def regularised(self) -> bool:
        """True when the training objective is not the plain bound (beta, warm-up or free bits)."""
        return self.beta != 1 or self.kl_warmup > 0 or self.free_bits > 0


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
