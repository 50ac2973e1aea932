"""The command line's grammar: subcommands and flags. `aevb train` gets one flag per config field
(`aevb.cli.fields`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from .fields import CHOICES as CHOICES  # the string fields' choices, also importable from here
from .fields import MODEL_FIELDS, TRAIN_FIELDS, add_field
from .progress import LINE_EVERY_S

RUN_SPLIT = "test"  # the split of the run's dataset that eval, reconstruct, encode, ... read by default


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


def _number_in(interval: str, inside):
    """An argparse type: a number for which inside(v) holds, named `interval` (e.g. "(0, 1)") in the error."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not inside(v):
            raise argparse.ArgumentTypeError(f"{text} must be in {interval}")
        return v

    return parse


_positive = _at_least(1)
# for command modules that register their own subcommands
at_least, positive, number_in = _at_least, _positive, _number_in


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


def _add_dist_flags(p: argparse.ArgumentParser) -> None:
    from ..distributed import BACKENDS, DEFAULT_TIMEOUT_S

    g = p.add_argument_group("torch.distributed (under torchrun; ignored otherwise)")
    g.add_argument(
        "--dist-backend", default="auto", choices=BACKENDS, help="auto = nccl with CUDA, else gloo (default: auto)"
    )
    g.add_argument(
        "--dist-timeout",
        type=_number_in("(0, inf)", lambda v: 0 < v < float("inf")),
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
        add_field(g, f)
    g = t.add_argument_group("training (stored in config.json)")
    for f in TRAIN_FIELDS:
        add_field(g, f)

    def run_cmd(name: str, help: str, data: bool = True) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, formatter_class=fmt)
        s.add_argument("run", metavar="RUN", help="run directory written by `aevb train`")
        add_module_flag(s)
        if data:
            s.add_argument(
                "--split", default=RUN_SPLIT, choices=("train", "valid", "test"), help="split of the run's dataset"
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
        "fitted once per --components K and kept in RUN/aggregate-K.safetensors)",
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
        help=".npz (mu, logvar, label), .npy ([mu | logvar]) or .csv (default: RUN/encoded_<split>.npz)",
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
