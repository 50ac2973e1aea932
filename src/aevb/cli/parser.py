"""The command line's grammar: subcommands and flags. `aevb train` gets one flag per config field."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from .. import config as C
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
from .progress import LINE_EVERY_S

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
    "adam_beta1": "Adam's beta1 (decay of the gradients' mean)",
    "adam_beta2": "Adam's beta2 (decay of their squares' mean)",
    "adam_eps": "Adam's epsilon (Burda et al. 2016: 1e-4)",
    "recipe": f"start from a published setup, {', '.join(RECIPES)}; a --config file and flags override its "
    "fields; `list` prints them (stored as the run's recipe)",
}
# Choices of the string fields; those that name a part are the keys of its dict (as config checks them).
CHOICES = {
    "activation": C.ACTIVATIONS,
    "likelihood": tuple(LIKELIHOODS),
    "init": C.INITS,
    "objective": tuple(OBJECTIVES),
    "estimator": C.ESTIMATORS,
    "optimizer": tuple(OPTIMIZERS),
    "binarize": C.BINARIZE,
    "device": C.DEVICES,
    "nonfinite": C.NONFINITE,
    "compile": C.COMPILE,
    "precision": C.PRECISIONS,
    "arch": tuple(ARCHS),
    "prior": tuple(PRIORS),
    "flow": tuple(FLOWS),
    "condition_on": C.CONDITIONS,
    "gradient": GRADIENTS,
    "lr_schedule": tuple(LR_SCHEDULES),
    "inference": INFERENCE,
}
MODEL_FIELDS = [
    f for f in dataclasses.fields(C.ModelConfig) if f.name != "data_shape"
]  # data_shape comes from the data
TRAIN_FIELDS = list(dataclasses.fields(C.TrainConfig))


def _at_least(low: int):
    """An argparse type: a whole number >= low."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"{text} must be >= {low}")
        return v

    return parse


_positive = _at_least(1)
at_least, positive = _at_least, _positive  # for command modules that register their own subcommands


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help, unless the help already states its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and "(default:" in action.help:
            return action.help
        if action.help and action.option_strings and action.default is not argparse.SUPPRESS:
            d = action.default  # None and flags read as words, the way the config's fields are shown
            shown = "none" if d is None else ("on" if d else "off") if isinstance(d, bool) else d
            return f"{action.help} (default: {shown})"
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"aevb: error: {message}\n")


def _add_field(p: argparse.ArgumentParser, f: dataclasses.Field) -> None:
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


def _add_dist_flags(p: argparse.ArgumentParser) -> None:
    from ..distributed import BACKENDS, DEFAULT_TIMEOUT_S

    g = p.add_argument_group("torch.distributed (under torchrun; ignored otherwise)")
    g.add_argument(
        "--dist-backend", default="auto", choices=BACKENDS, help="auto = nccl with CUDA, else gloo (default: auto)"
    )
    g.add_argument(
        "--dist-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"a collective waiting longer than this (a rank died) fails (default: {DEFAULT_TIMEOUT_S:g})",
    )


def add_module_flag(p: argparse.ArgumentParser) -> None:
    """`--module` of a command that reads a run: the builder of a run trained with its own networks."""
    p.add_argument(
        "--module",
        metavar="PKG.MOD:BUILD",
        default=None,
        help="runs trained with your own networks (their config's module): the import path of build(config) -> "
        "(encoder, decoder) that makes them again; the weights come from the run, never a pickle "
        "(default: none, the in-tree networks)",
    )


def given(args: argparse.Namespace, fields: list[dataclasses.Field]) -> dict[str, Any]:
    out = {}
    for f in fields:
        v = getattr(args, f.name)
        if v is not None:
            out[f.name] = tuple(v) if isinstance(v, list) else v
    return out


# A command module outside this file adds its own subcommand: register(subparsers) -> None.
Register = Callable[[Any], None]


def build_parser(extra: Sequence[Register] = ()) -> argparse.ArgumentParser:
    fmt = HelpFormatter
    p = Parser(
        prog="aevb",
        description="Variational auto-encoders (Kingma & Welling, 2013). "
        "Numbers are per example, in nats; bounds and log-likelihoods: higher is better.",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    t = sub.add_parser("train", help="train a VAE; writes a run directory")
    t.add_argument("--out", help="run directory to create, a path (default: RUNS_DIR/NAME)")
    t.add_argument(
        "--name", help="run name: the run is RUNS_DIR/NAME (default: the config file's 'name', else <dataset>-<time>)"
    )
    t.add_argument("--runs-dir", default="runs", help="folder that holds named runs (default: runs)")
    t.add_argument(
        "--config",
        metavar="FILE",
        help="JSON file of fields ({'model': {...}, 'train': {...}, 'name': ...}, like a run's config.json); "
        "flags override it",
    )
    t.add_argument(
        "--resume",
        metavar="RUN",
        help="continue RUN from its last checkpoint (only --epochs, --time-limit and --checkpoint-* may change)",
    )
    t.add_argument("--data-dir", help="folder of the built-in datasets (default: $AEVB_DATA_DIR or ~/.cache/aevb)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_dist_flags(t)
    g = t.add_argument_group("model (stored in config.json)")
    for f in MODEL_FIELDS:
        _add_field(g, f)
    g = t.add_argument_group("training (stored in config.json)")
    for f in TRAIN_FIELDS:
        _add_field(g, f)

    def run_cmd(name: str, help: str, data: bool = True) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, formatter_class=fmt)
        s.add_argument("run", metavar="RUN", help="run directory written by `aevb train`")
        add_module_flag(s)
        if data:
            s.add_argument(
                "--split", default="test", choices=("train", "valid", "test"), help="split of the run's dataset"
            )
            s.add_argument(
                "--data", metavar="FILE", default=None, help="score this .npy/.npz/.csv file instead of a split"
            )
            s.add_argument("--data-dir", default=None, help="folder of the built-in datasets")
        return s

    e = run_cmd("eval", "test ELBO and importance-sampled log p(x), nats per example")
    e.add_argument(
        "--k", type=_positive, default=None, help="importance samples per example (default: the run's eval_k, 5000)"
    )
    e.add_argument("--batch-size", type=_positive, default=50, help="examples per batch")
    e.add_argument("--seed", type=int, default=0, help="seed of the evaluation noise")
    e.add_argument(
        "--no-progress",
        action="store_true",
        help=f"no progress: a bar on a terminal, else a line every {LINE_EVERY_S:g} s on stderr",
    )
    _add_dist_flags(e)

    s = run_cmd("sample", "draw new data from the model", data=False)
    s.add_argument("--n", type=_positive, default=64, help="number of samples")
    s.add_argument("--seed", type=int, default=0, help="seed of z ~ p(z)")
    s.add_argument("--draw", action="store_true", help="draw x ~ p(x|z) instead of showing E[x|z]")
    s.add_argument(
        "--from",
        dest="source",
        default="prior",
        choices=("prior", "aggregate"),
        help="z ~ p(z), or z ~ a Gaussian mixture fitted on the training posterior means (the aggregate posterior; "
        "fitted once and kept in RUN/aggregate.safetensors)",
    )
    s.add_argument("--components", type=_positive, default=10, help="mixture components of --from aggregate")
    s.add_argument(
        "--label",
        type=_at_least(0),
        default=None,
        help="conditional runs (--condition-on labels): draw from p(x|z, y = LABEL) (default: the classes in turn, "
        "one per column)",
    )
    s.add_argument("--ncols", type=_positive, default=10, help="grid columns when the classes go in turn")
    s.add_argument("--data-dir", default=None, help="folder of the built-in datasets (--from aggregate)")
    s.add_argument(
        "--out",
        default=None,
        help="PNG grid for images, .npy/.csv for tables; an existing --out is replaced (default: RUN/samples.png|csv, "
        "or RUN/samples-2.png|csv, -3, ... when that exists: the samples that training wrote are kept)",
    )

    r = run_cmd("reconstruct", "inputs next to their reconstructions E[x|z = posterior mean]")
    r.add_argument("--n", type=_at_least(0), default=32, help="number of inputs (images) or rows (tables; 0 = all)")
    r.add_argument(
        "--out", default=None, help="PNG for images, .npy/.csv for tables (default: RUN/reconstructions.png|csv)"
    )

    n = run_cmd(
        "encode",
        "posterior means and log-variances of q(z|x) (--flow runs: the flow of the Gaussian's mean, and the "
        "log-variances of that Gaussian before the flow)",
    )
    n.add_argument(
        "--out",
        default=None,
        help=".npz (mu, logvar, labels), .npy ([mu | logvar]) or .csv (default: RUN/encoded_<split>.npz)",
    )
    n.add_argument("--plot", default=None, help="also a PNG scatter of the means (2-D latents)")

    m = run_cmd("manifold", "decode a grid of a 2-D latent through the inverse Gaussian CDF (paper Fig. 4)", data=False)
    m.add_argument("--n", type=_at_least(2), default=20, help="grid points per axis")
    m.add_argument("--label", type=_at_least(0), default=None, help="the class of a conditional run's manifold")
    m.add_argument("--out", default=None, help="PNG path (default: RUN/manifold.png)")

    pl = run_cmd("plot", "training curves", data=False)
    pl.add_argument("--out", default=None, help="PNG path (default: RUN/curves.png)")
    for register in extra:
        register(sub)
    return p
