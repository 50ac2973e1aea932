"""`aevb interpolate` and `aevb traverse`: decoded paths through a trained run's latent space.

(`aevb sample --from aggregate`, the aggregate-posterior sampler, is an option of `aevb sample`.)
"""

from __future__ import annotations

import argparse

import torch

from .. import plots
from ..errors import AevbError
from ..sampling import interpolate, posterior_means, traverse
from .common import condition, labels_for, load_run, out_path, read_data, write_images_or_table
from .parser import HelpFormatter, add_module_flag, at_least


def register(sub) -> None:
    fmt = HelpFormatter

    def common(name: str, help: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, formatter_class=fmt)
        s.add_argument("run", metavar="RUN", help="run directory written by `aevb train`")
        add_module_flag(s)
        s.add_argument("--split", default="test", choices=("train", "valid", "test"), help="split the inputs come from")
        s.add_argument("--data", metavar="FILE", default=None, help="take the inputs from this .npy/.npz/.csv file")
        s.add_argument("--data-dir", default=None, help="folder of the built-in datasets")
        return s

    i = common("interpolate", "decode the straight line between two inputs' posterior means")
    i.add_argument("--from", dest="index_from", type=at_least(0), default=0, help="row index of the first input")
    i.add_argument("--to", dest="index_to", type=at_least(0), default=1, help="row index of the second input")
    i.add_argument("--steps", type=at_least(2), default=10, help="points on the line, both ends included")
    i.add_argument("--out", default=None, help="PNG (images) or .npy/.csv (default: RUN/interpolation.png|csv)")

    t = common("traverse", "latent traversals: move one latent dimension at a time and decode")
    t.add_argument(
        "--index", type=at_least(-1), default=-1, help="row whose posterior mean is the base code; -1 = z = 0"
    )
    t.add_argument("--dims", type=int, nargs="+", default=None, help="latent dimensions to traverse (default: all)")
    t.add_argument("--n", type=at_least(2), default=9, help="values per dimension")
    t.add_argument("--range", dest="span", type=float, default=3.0, help="values from -RANGE to +RANGE")
    t.add_argument(
        "--label",
        type=at_least(0),
        default=None,
        help="conditional runs: decode with this class (default: the --index row's label, or class 0 when z = 0)",
    )
    t.add_argument(
        "--out", default=None, help="PNG, one row per dimension (images) or .npy/.csv (default: RUN/traversals.png|csv)"
    )


def _inputs(args: argparse.Namespace, model, train_cfg, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The rows of the split or --data file, and their labels when the run is conditional (else None)."""
    x, y, source = read_data(args, model, train_cfg)
    for r in rows:
        if r >= x.shape[0]:
            raise AevbError(f"row {r} is out of range: {source} has {x.shape[0]} rows")
    y = condition(model, y)
    return x[rows], (None if y is None else y[rows])


def cmd_interpolate(args: argparse.Namespace) -> None:
    """Decoded means along the line between the posterior means of rows --from and --to."""
    model, train_cfg = load_run(args)
    is_image = plots.is_image(model.config.data_shape)
    out = out_path(args, "interpolation.png" if is_image else "interpolation.csv", [args.data])
    x, y = _inputs(args, model, train_cfg, [args.index_from, args.index_to])
    _, xs = interpolate(model, x[0], x[1], args.steps, y=y)
    if is_image and out.suffix.lower() == ".png":  # the two inputs framing the decoded path
        write_images_or_table(out, torch.cat([x[:1], xs, x[1:]]), True, args.steps + 2)
    else:
        write_images_or_table(out, xs, is_image)
    print(f"{args.steps}-step interpolation between rows {args.index_from} and {args.index_to} written to {out}")


def cmd_traverse(args: argparse.Namespace) -> None:
    """One row per latent dimension: the base code with that dimension set to -RANGE .. +RANGE."""
    model, train_cfg = load_run(args)
    dz = model.config.latent_dim
    dims = list(range(dz)) if args.dims is None else args.dims
    bad = [d for d in dims if not 0 <= d < dz]
    if bad:
        raise AevbError(f"--dims {bad[0]} is out of range: the latent has {dz} dimensions (0..{dz - 1})")
    if not args.span > 0 or args.span != args.span or args.span == float("inf"):
        raise AevbError("--range must be a positive number")
    is_image = plots.is_image(model.config.data_shape)
    out = out_path(args, "traversals.png" if is_image else "traversals.csv", [args.data])
    label = labels_for(model, args.label, 1)  # (1,) a conditional run's class, None otherwise
    if args.index >= 0:
        x, y = _inputs(args, model, train_cfg, [args.index])
        base = posterior_means(model, x, y=y)[0]
        label = y if args.label is None else label
    else:
        base = torch.zeros(dz)
    values = torch.linspace(-args.span, args.span, args.n)
    _, xs = traverse(model, base, dims, values, None if label is None else int(label[0]))
    flat = xs.reshape(-1, *model.config.data_shape)
    if is_image and out.suffix.lower() == ".png":
        plots.save(plots.image_grid(flat.numpy(), args.n), out)
    else:
        write_images_or_table(out, flat, is_image)
    print(
        f"traversals of {len(dims)} latent dimension(s), {args.n} values in "
        f"[-{args.span:g}, {args.span:g}], written to {out}"
    )


COMMANDS = {"interpolate": cmd_interpolate, "traverse": cmd_traverse}
