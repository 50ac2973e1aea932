"""The commands that read a trained run: eval, sample, reconstruct, encode, manifold, plot."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .. import config as C
from .. import distributed, plots
from ..checkpoint import load, read_config
from ..errors import AevbError
from ..evaluate import bits_per_dim, elbo_terms, posterior_mean_variance, summarize
from ..files import atomic_write_text, save_table
from ..preprocess import check_labels, run_data
from ..rundir import read_metrics


def _load_run(args: argparse.Namespace):
    """The run's model (eval mode, CPU) and its training config."""
    model_cfg, train_cfg = read_config(args.run)
    train_cfg = train_cfg or C.TrainConfig()
    return load(args.run), train_cfg


def _run_data(args: argparse.Namespace, model, train_cfg: C.TrainConfig):
    """(x, labels, description) of the split or --data file the command works on; a conditional
    run's labels are checked (present, in its classes)."""
    x, y, source = run_data(model.config, train_cfg.binarize, train_cfg.dataset, args.split, args.data, args.data_dir)
    if model.config.conditional:
        y = check_labels(y, x.shape[0], model.config, source)
    return x, y, source


def _condition(model, y: torch.Tensor | None) -> torch.Tensor | None:
    """The labels a conditional model's densities take (None for an unconditional model)."""
    return y if model.config.conditional else None


def labels_for(model, label: int | None, n: int) -> torch.Tensor | None:
    """The labels y (n,) that n codes are decoded with: `--label` for all of them, or the classes in
    turn (0, 1, .., C-1, 0, ..) when none is given; None for an unconditional model."""
    c = model.config
    if not c.conditional:
        if label is not None:
            raise AevbError("--label needs a conditional run (one trained with --condition-on labels)")
        return None
    if label is not None and label >= c.classes:
        raise AevbError(f"--label {label} is out of range: the run knows the classes 0..{c.classes - 1}")
    return torch.full((n,), label, dtype=torch.int64) if label is not None else torch.arange(n) % c.classes


def _out(args: argparse.Namespace, default: str, inputs: Sequence[str | None] = ()) -> Path:
    out = Path(args.out) if args.out else Path(args.run) / default
    for i in inputs:  # never overwrite what the user handed in
        if i is not None and Path(i).exists() and out.exists() and out.resolve() == Path(i).resolve():
            raise AevbError(f"--out {out} is the input file; choose another path")
    if not out.parent.is_dir():
        raise AevbError(f"cannot write {out}: folder {out.parent} does not exist")
    return out


def cmd_eval(args: argparse.Namespace) -> None:
    """Test ELBO and importance-sampled log p(x) with standard errors; stored as RUN/eval_<split>.json.

    Under torchrun the ranks share the importance samples (or the examples); rank 0 reports.
    """
    with distributed.session("cpu", args.dist_backend, args.dist_timeout) as ctx:
        _eval(args, ctx)


def _eval(args: argparse.Namespace, ctx: distributed.Context) -> None:
    ok = False
    try:
        model, train_cfg = _load_run(args)
        k = args.k or train_cfg.eval_k
        x, y, source = _run_data(args, model, train_cfg)
        y = _condition(model, y)
        ok = True
    finally:
        distributed.agree(ok, ctx)
    terms = elbo_terms(model, x, seed=args.seed, y=y)  # one sample per example: every rank computes it whole
    with tqdm(
        total=x.shape[0],
        unit="ex",
        desc=f"log p(x), k={k}",
        leave=False,
        disable=args.no_progress or not ctx.is_main or None,
    ) as bar:
        ll = distributed.log_likelihood(
            model, x, k, ctx, batch_size=args.batch_size, seed=args.seed, on_batch=bar.update, y=y
        )
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
    }
    for name, v in (("elbo", terms.elbo), ("log_px_z", terms.log_px_z), ("kl", terms.kl), ("log_likelihood", ll)):
        res[name], res[name + "_se"] = summarize(v)
    res["bits_per_dim"] = summarize(bits_per_dim(ll, d))[0]
    activity = posterior_mean_variance(model, x, y=y)  # Burda et al. (2016): unit j is active if Var_x E_q[z_j] > 0.01
    res["active_units"], res["latent_dim"] = int((activity > 0.01).sum()), model.config.latent_dim
    res["posterior_mean_variance"] = [round(v, 6) for v in activity.tolist()]
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
    print(f"  active units {res['active_units']} of {res['latent_dim']}  (Var_x E_q[z_j] > 0.01, Burda et al. 2016)")


def _write_images_or_table(out: Path, x: torch.Tensor, is_image: bool, ncols: int | None = None) -> None:
    if out.suffix.lower() == ".png":
        if not is_image:
            raise AevbError("a PNG grid needs image data; use a .npy or .csv --out for tables")
        plots.save(plots.image_grid(x.cpu().numpy(), ncols), out)
    else:
        save_table(out, {"x": x.reshape(x.shape[0], -1).cpu().numpy()})


def cmd_sample(args: argparse.Namespace) -> None:
    """New data from the model: a PNG grid of images, or a table."""
    model, _ = _load_run(args)
    is_image = plots.is_image(model.config.data_shape)
    out = _out(args, "samples.png" if is_image else "samples.csv")
    g = torch.Generator().manual_seed(args.seed)
    y = labels_for(model, args.label, args.n)
    if getattr(args, "source", "prior") == "aggregate":
        from ..sampling import aggregate_for_run, decode

        gmm = aggregate_for_run(args.run, model, _load_run(args)[1], args.components, args.data_dir)
        x = decode(model, gmm.sample(args.n, g), g, mean=not args.draw, y=y)
    else:
        x = model.sample(args.n, g, mean=not args.draw, y=y)
    _write_images_or_table(out, x, is_image, args.ncols if y is not None and args.label is None else None)
    of = "" if y is None else (f" of class {args.label}" if args.label is not None else " of the classes in turn")
    print(f"{args.n} samples{of} written to {out}")


def cmd_reconstruct(args: argparse.Namespace) -> None:
    """Inputs and their reconstructions E[x|z = posterior mean]."""
    model, train_cfg = _load_run(args)
    x, y, source = _run_data(args, model, train_cfg)
    is_image = plots.is_image(model.config.data_shape)
    out = _out(args, "reconstructions.png" if is_image else "reconstructions.csv", [args.data])
    x = x[: args.n] if args.n > 0 else x
    y = None if not model.config.conditional else y[: x.shape[0]]
    with torch.no_grad():
        xr = model.decode(model.encode(x, y).mean, y).mean.reshape(x.shape)
    if out.suffix.lower() == ".png" and is_image:  # rows of inputs above rows of reconstructions
        ncols = min(8, x.shape[0])
        pairs = [t for i in range(0, x.shape[0], ncols) for t in (x[i : i + ncols], xr[i : i + ncols])]
        pad = [torch.cat([p, torch.ones(ncols - p.shape[0], *p.shape[1:])]) for p in pairs]
        _write_images_or_table(out, torch.cat(pad), True, ncols)
    else:
        _write_images_or_table(out, xr, is_image)
    print(f"{x.shape[0]} reconstructions of {source} written to {out}")


def cmd_encode(args: argparse.Namespace) -> None:
    """Posterior means and log-variances of q(z|x), optionally a scatter plot."""
    model, train_cfg = _load_run(args)
    x, labels, source = _run_data(args, model, train_cfg)
    out = _out(args, f"encoded_{'file_' + Path(args.data).stem if args.data else args.split}.npz", [args.data])
    with torch.no_grad():
        q = model.encode(x, _condition(model, labels))
    mu, logvar = q.mean.numpy(), (2 * q.base_dist.scale.log()).numpy()
    cols = {"mu": mu, "logvar": logvar}
    if labels is not None and out.suffix.lower() != ".npy":
        cols["label"] = labels.numpy()
    save_table(out, cols)
    print(f"posterior means and log-variances of {x.shape[0]} rows of {source} written to {out}")
    if args.plot:
        if mu.shape[1] != 2:
            raise AevbError(f"--plot needs a 2-D latent; this model has {mu.shape[1]} (the table was written)")
        plots.save(plots.latent_scatter(mu, labels.numpy() if labels is not None else None), args.plot)
        print(f"scatter plot written to {args.plot}")


def cmd_manifold(args: argparse.Namespace) -> None:
    """The decoded grid of a 2-D latent (paper, Figure 4)."""
    model, _ = _load_run(args)
    if model.config.latent_dim != 2 or not plots.is_image(model.config.data_shape):
        raise AevbError(
            f"the manifold needs a 2-D latent and image data; this run has latent_dim "
            f"{model.config.latent_dim} and data shape {model.config.data_shape}"
        )
    out = _out(args, "manifold.png")
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
    out = _out(args, "curves.png")
    plots.save(plots.curves(records), out)
    print(f"training curves written to {out}")
