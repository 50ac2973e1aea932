"""The commands that read a trained run: eval, sample, reconstruct, encode, manifold, plot."""

from __future__ import annotations

import argparse
import functools
import json
import os
from pathlib import Path
from typing import Any

import torch

from .. import distributed, plots
from ..errors import AevbError
from ..evaluate import ACTIVE_THRESHOLD, evaluation_record
from ..files import atomic_write_text, save_table
from ..rundir import read_metrics
from .common import (
    condition,
    in_existing_folder,
    labels_for,
    load_run,
    out_path,
    read_data,
    unused_name,
    write_images_or_table,
)
from .progress import progress


def cmd_eval(args: argparse.Namespace) -> None:
    """Test ELBO and importance-sampled log p(x) with standard errors; stored as RUN/eval_<split>.json.

    Under torchrun the ranks share the importance samples (or the examples); rank 0 reports.
    """
    with distributed.session("cpu", args.dist_backend, args.dist_timeout) as ctx:
        _eval(args, ctx)


def _eval(args: argparse.Namespace, ctx: distributed.Context) -> None:
    ok = False
    try:
        model, train_cfg = load_run(args)
        k = args.k or train_cfg.eval_k
        x, y, source = read_data(args, model, train_cfg)
        y = condition(model, y)
        ok = True
    finally:
        distributed.agree(ok, ctx)
    with progress(
        x.shape[0], f"log p(x), k={k}", disabled=args.no_progress or not ctx.is_main
    ) as bar:  # every rank takes its share of the importance samples (or of the examples)
        estimate = functools.partial(distributed.log_likelihood, ctx=ctx)
        numbers = evaluation_record(model, x, k, args.seed, args.batch_size, y, bar.update, estimate)
    if not ctx.is_main:
        return
    d = model.config.data_dim
    res: dict[str, Any] = {
        "data": source,
        "examples": x.shape[0],
        "binarize": train_cfg.binarize,
        "likelihood": model.config.likelihood,
        "k": k,
        "seed": args.seed,
        "units": "nats per example",
        "processes": ctx.world_size,
        "conditioned_on": model.config.condition_on,  # labels: the numbers are of log p(x|y)
        **numbers,
    }
    tag = f"file_{Path(args.data).stem}" if args.data else args.split  # a file never overwrites a split's result
    atomic_write_text(Path(args.run) / f"eval_{tag}.json", json.dumps(res, indent=2) + "\n")
    print(f"{source}: {res['examples']} examples, {model.config.likelihood} likelihood, binarisation {res['binarize']}")
    if y is not None:
        print("  conditioned on the labels: the ELBO and log p(x) below are of log p(x | y)")
    print(
        f"  ELBO      {res['elbo']:10.3f} ± {res['elbo_se']:.3f} nats  "
        f"(E log p(x|z) {res['log_px_z']:.3f}, KL {res['kl']:.3f})"
    )
    print(
        f"  log p(x)  {res['log_likelihood']:10.3f} ± {res['log_likelihood_se']:.3f} nats  (importance sampled, k={k})"
    )
    print(f"  bits/dim  {res['bits_per_dim']:10.4f}  (-log2 p(x) / {d})")
    per = ""
    if len(res["latents"]) > 1:
        layers = zip(res["active_units_per_layer"], res["latents"])
        per = "; per layer, z_1 first: " + ", ".join(f"{a} of {d}" for a, d in layers)
    if "kl_per_layer" in res:
        print("  KL per layer, z_1 first: " + ", ".join(f"{v:.3f}" for v in res["kl_per_layer"]) + " nats")
    print(
        f"  active units {res['active_units']} of {res['latent_dim']}  "
        f"(Var_x E_q[z_j] > {ACTIVE_THRESHOLD:g}, Burda et al. 2016{per})"
    )


def cmd_sample(args: argparse.Namespace) -> None:
    """New data from the model: a PNG grid of images, or a table."""
    model, _ = load_run(args)
    is_image = plots.is_image(model.config.data_shape)
    out = out_path(args, unused_name(args.run, "samples.png" if is_image else "samples.csv"))
    g = torch.Generator().manual_seed(args.seed)
    y = labels_for(model, args.label, args.n)
    if getattr(args, "source", "prior") == "aggregate":
        from ..sampling import aggregate_for_run, decode

        gmm = aggregate_for_run(args.run, model, load_run(args)[1], args.components, args.data_dir)
        x = decode(model, gmm.sample(args.n, g), g, mean=not args.draw, y=y)
    else:
        x = model.sample(args.n, g, mean=not args.draw, y=y)
    write_images_or_table(out, x, is_image, args.ncols if y is not None and args.label is None else None)
    of = "" if y is None else (f" of class {args.label}" if args.label is not None else " of the classes in turn")
    print(f"{args.n} samples{of} written to {out}")


def cmd_reconstruct(args: argparse.Namespace) -> None:
    """Inputs and their reconstructions E[x|z = posterior mean]."""
    model, train_cfg = load_run(args)
    x, y, source = read_data(args, model, train_cfg)
    is_image = plots.is_image(model.config.data_shape)
    out = out_path(args, "reconstructions.png" if is_image else "reconstructions.csv", [args.data])
    x = x[: args.n] if args.n > 0 else x
    y = None if not model.config.conditional else y[: x.shape[0]]
    xr = model.reconstruct(x, y)
    if out.suffix.lower() == ".png" and is_image:  # rows of inputs above rows of reconstructions
        ncols = min(8, x.shape[0])
        pairs = [t for i in range(0, x.shape[0], ncols) for t in (x[i : i + ncols], xr[i : i + ncols])]
        pad = [torch.cat([p, torch.ones(ncols - p.shape[0], *p.shape[1:])]) for p in pairs]
        write_images_or_table(out, torch.cat(pad), True, ncols)
    else:
        write_images_or_table(out, xr, is_image)
    print(f"{x.shape[0]} reconstructions of {source} written to {out}")


def cmd_encode(args: argparse.Namespace) -> None:
    """Posterior means and log-variances of q(z|x) (every layer of a stack, z_1 first), optionally a scatter
    plot (of the top layer)."""
    model, train_cfg = load_run(args)
    x, labels, source = read_data(args, model, train_cfg)
    out = out_path(args, f"encoded_{'file_' + Path(args.data).stem if args.data else args.split}.npz", [args.data])
    if args.plot:  # refused before the table is written
        if model.top_dim != 2:
            raise AevbError(f"--plot needs a 2-D (top) latent; this model has {model.top_dim}")
        plot = Path(args.plot)
        if plot.suffix.lower() != ".png":
            raise AevbError(f"--plot {plot}: the scatter plot is a PNG; give a path ending in .png")
        in_existing_folder(plot)
        if not os.access(plot.parent, os.W_OK):
            raise AevbError(f"cannot write {plot}: folder {plot.parent} is not writable")
    with torch.no_grad():
        q = model.encode(x, condition(model, labels))
        # every layer's, z_1 first (a stack's: the conditional means and log-variances along the means' pass;
        # a flow posterior's: its Gaussian q0's, before the flow)
        mu, logvar = q.mean.numpy(), (2 * q.stddev.log()).numpy()
    cols = {"mu": mu, "logvar": logvar}
    if labels is not None and out.suffix.lower() != ".npy":
        cols["label"] = labels.numpy()
    save_table(out, cols)
    print(f"posterior means and log-variances of {x.shape[0]} rows of {source} written to {out}")
    if args.plot:  # the top layer of a stack
        top = mu[:, mu.shape[1] - model.top_dim :]
        plots.save(plots.latent_scatter(top, labels.numpy() if labels is not None else None), args.plot)
        print(f"scatter plot written to {args.plot}")


def cmd_manifold(args: argparse.Namespace) -> None:
    """The decoded grid of a 2-D latent (paper, Figure 4)."""
    model, _ = load_run(args)
    if model.top_dim != 2 or not plots.is_image(model.config.data_shape):
        raise AevbError(
            f"the manifold needs a 2-D (top) latent and image data; this run has a top latent of "
            f"{model.top_dim} and data shape {model.config.data_shape}"
        )
    out = out_path(args, "manifold.png", suffix=".png")
    if model.config.conditional and args.label is None:
        raise AevbError("the manifold of a conditional run is drawn for one class: give --label")
    label = labels_for(model, args.label, 1)
    plots.save(plots.image_grid(plots.manifold_images(model, args.n, label), args.n), out)
    print(f"{args.n}x{args.n} manifold written to {out}")


def cmd_plot(args: argparse.Namespace) -> None:
    """Training and validation curves from metrics.jsonl."""
    from ..checkpoint import read_config

    read_config(args.run)
    records = read_metrics(args.run)
    if not records:
        raise AevbError(f"{args.run} has no metrics yet (metrics.jsonl is empty or missing)")
    out = out_path(args, "curves.png", suffix=".png")
    plots.save(plots.curves(records), out)
    print(f"training curves written to {out}")
