"""The `aevb` command: the only place that parses argv, prints, and picks output paths."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import config as C
from .errors import AevbError

# Help for every config field; `aevb train` gets one flag per field, named after it.
FIELD_HELP = {
    "latent_dim": "size of the latent z",
    "hidden": "hidden layer sizes of the encoder MLP (the decoder mirrors them)",
    "activation": "hidden activation",
    "likelihood": "p(x|z): bernoulli (logits), gaussian (fixed --sigma), gaussian-learned (per-dim variance)",
    "sigma": "standard deviation of the fixed gaussian likelihood",
    "logvar_min": "lower clamp of the gaussian-learned log-variance",
    "logvar_max": "upper clamp of the gaussian-learned log-variance",
    "init": "weight init: torch's default, or normal = N(0, init-std^2) for all weights as in the paper",
    "init_std": "standard deviation of --init normal",
    "dataset": "built-in dataset (digits, mnist, fashion-mnist, binarized-mnist, frey-face) or a .npy/.npz/.csv file",
    "objective": "elbo (SGVB) or iwae (importance-weighted bound with --k samples)",
    "estimator": "SGVB estimator: analytic = B (closed-form KL), mc = A (Monte Carlo KL)",
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
}
CHOICES = {
    "activation": C.ACTIVATIONS, "likelihood": C.LIKELIHOOD_NAMES, "init": C.INITS, "objective": C.OBJECTIVES,
    "estimator": C.ESTIMATORS, "optimizer": C.OPTIMIZERS, "binarize": C.BINARIZE, "device": C.DEVICES,
}
MODEL_FIELDS = [f for f in dataclasses.fields(C.ModelConfig) if f.name != "data_shape"]  # data_shape comes from the data
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


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"aevb: error: {message}\n")


def _add_field(p: argparse.ArgumentParser, f: dataclasses.Field) -> None:
    flag = "--" + f.name.replace("_", "-")
    shown = " ".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
    kw: dict[str, Any] = {"default": None, "help": f"{FIELD_HELP[f.name]} (default: {shown})"}
    if f.name in CHOICES:
        kw["choices"] = CHOICES[f.name]
    elif f.name == "hidden":
        kw.update(type=int, nargs="+", metavar="H")
    else:
        kw["type"] = type(f.default)
    p.add_argument(flag, **kw)


def _given(args: argparse.Namespace, fields: list[dataclasses.Field]) -> dict[str, Any]:
    out = {}
    for f in fields:
        v = getattr(args, f.name)
        if v is not None:
            out[f.name] = tuple(v) if f.name == "hidden" else v
    return out


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = _Parser(prog="aevb", description="Variational auto-encoders (Kingma & Welling, 2013). "
                "Numbers are per example, in nats; bounds and log-likelihoods: higher is better.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a VAE; writes a run directory")
    t.add_argument("--out", help="run directory to create (default: runs/<dataset>-<time>)")
    t.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint (only --epochs may change)")
    t.add_argument("--data-dir", help="folder of the built-in datasets (default: $AEVB_DATA_DIR or ~/.cache/aevb)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = t.add_argument_group("model (stored in config.json)")
    for f in MODEL_FIELDS:
        _add_field(g, f)
    g = t.add_argument_group("training (stored in config.json)")
    for f in TRAIN_FIELDS:
        _add_field(g, f)

    def run_cmd(name: str, help: str, data: bool = True) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, formatter_class=fmt)
        s.add_argument("run", metavar="RUN", help="run directory written by `aevb train`")
        if data:
            s.add_argument("--split", default="test", choices=("train", "valid", "test"), help="split of the run's dataset")
            s.add_argument("--data", metavar="FILE", default=None, help="score this .npy/.npz/.csv file instead of a split")
            s.add_argument("--data-dir", default=None, help="folder of the built-in datasets")
        return s

    e = run_cmd("eval", "test ELBO and importance-sampled log p(x), nats per example")
    e.add_argument("--k", type=_positive, default=None, help="importance samples per example (default: the run's eval_k, 5000)")
    e.add_argument("--batch-size", type=_positive, default=50, help="examples per batch")
    e.add_argument("--seed", type=int, default=0, help="seed of the evaluation noise")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = run_cmd("sample", "draw new data from the model", data=False)
    s.add_argument("--n", type=_positive, default=64, help="number of samples")
    s.add_argument("--seed", type=int, default=0, help="seed of z ~ p(z)")
    s.add_argument("--draw", action="store_true", help="draw x ~ p(x|z) instead of showing E[x|z]")
    s.add_argument("--out", default=None, help="PNG grid for images, .npy/.csv for tables (default: RUN/samples.png|csv)")

    r = run_cmd("reconstruct", "inputs next to their reconstructions E[x|z = posterior mean]")
    r.add_argument("--n", type=_at_least(0), default=32, help="number of inputs (images) or rows (tables; 0 = all)")
    r.add_argument("--out", default=None, help="PNG for images, .npy/.csv for tables (default: RUN/reconstructions.png|csv)")

    n = run_cmd("encode", "posterior means and log-variances of q(z|x)")
    n.add_argument("--out", default=None, help=".npz (mu, logvar, labels), .npy ([mu | logvar]) or .csv (default: RUN/encoded_<split>.npz)")
    n.add_argument("--plot", default=None, help="also a PNG scatter of the means (2-D latents)")

    m = run_cmd("manifold", "decode a grid of a 2-D latent through the inverse Gaussian CDF (paper Fig. 4)", data=False)
    m.add_argument("--n", type=_at_least(2), default=20, help="grid points per axis")
    m.add_argument("--out", default=None, help="PNG path (default: RUN/manifold.png)")

    pl = run_cmd("plot", "training curves", data=False)
    pl.add_argument("--out", default=None, help="PNG path (default: RUN/curves.png)")
    return p


# ---------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> None:
    from .train import train
    from .checkpoint import read_config

    model_kw, train_kw = _given(args, MODEL_FIELDS), _given(args, TRAIN_FIELDS)
    if args.resume:
        extra = sorted(set(model_kw) | (set(train_kw) - {"epochs"}))
        if extra or args.out:
            raise AevbError(f"--resume continues a run with its stored config; cannot change {', '.join(extra) or 'out'}")
        run_dir = Path(args.resume)
        model_cfg, train_cfg = read_config(run_dir)
        train_cfg = dataclasses.replace(train_cfg or C.TrainConfig(), **train_kw)
    else:
        try:
            model_cfg, train_cfg = C.ModelConfig(**model_kw), C.TrainConfig(**train_kw)
        except ValueError as e:
            raise AevbError(str(e)) from None
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(args.out) if args.out else Path("runs") / f"{Path(train_cfg.dataset).stem}-{stamp}"
        if Path(train_cfg.dataset).suffix:  # a user file: store where it is, not where we stood
            train_cfg = dataclasses.replace(train_cfg, dataset=str(Path(train_cfg.dataset).resolve()))

    bar = _Progress(args.no_progress, train_cfg.objective)
    model = train(model_cfg, train_cfg, run_dir, data_dir=args.data_dir, resume=bool(args.resume),
                  on_step=bar.step, on_epoch=bar.epoch)
    bar.close()
    from . import plots
    from .train import read_metrics

    if model.config.data_shape and len(model.config.data_shape) == 2:
        plots.save(plots.image_grid(model.sample(64, torch.Generator(device=_dev(model)).manual_seed(0)).cpu()),
                   run_dir / "samples.png")
    records = read_metrics(run_dir)
    if records:
        plots.save(plots.curves(records), run_dir / "curves.png")
    print(f"run saved in {run_dir}")


class _Progress:
    """A tqdm bar per epoch showing the running bound, and one summary line per epoch."""

    def __init__(self, disabled: bool, objective: str):
        self.disabled, self.objective, self.bar = disabled, objective, None

    def step(self, s) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=s.total, unit="ex", desc=f"epoch {s.epoch}/{s.epochs}", leave=False,
                            disable=self.disabled or None, dynamic_ncols=True)
            self.steps, self.sum = 0, torch.zeros((), device=s.batch_sum.device)
        self.steps += 1
        self.sum += s.batch_sum  # stays on the device: no sync per step
        self.bar.update(s.done - self.bar.n)
        if self.steps % 10 == 1 and not self.bar.disable:  # .item() syncs, so only now and then
            self.bar.set_postfix_str(f"running {self.objective} {self.sum.item() / s.done:.2f} nats")

    def epoch(self, r: dict[str, Any]) -> None:
        self.close()
        train_key = next(k for k in r if k.startswith("train_"))
        print(f"epoch {r['epoch']:4d}  {train_key.replace('_', ' ')} {r[train_key]:9.3f}  "
              f"valid elbo {r['valid_elbo']:9.3f} (log p(x|z) {r['valid_log_px_z']:9.3f}, "
              f"kl {r['valid_kl']:7.3f})  {r['seconds']:7.1f}s", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _dev(model) -> torch.device:
    return next(model.parameters()).device


def _load_run(args: argparse.Namespace):
    from .checkpoint import load, read_config

    model_cfg, train_cfg = read_config(args.run)
    train_cfg = train_cfg or C.TrainConfig()
    return load(args.run), train_cfg


def _run_data(args: argparse.Namespace, model, train_cfg: C.TrainConfig):
    from .preprocess import run_data

    return run_data(model.config, train_cfg.binarize, train_cfg.dataset, args.split, args.data, args.data_dir)


def _out(args: argparse.Namespace, default: str, inputs: Sequence[str | None] = ()) -> Path:
    out = Path(args.out) if args.out else Path(args.run) / default
    for i in inputs:  # never overwrite what the user handed in
        if i is not None and Path(i).exists() and out.exists() and out.resolve() == Path(i).resolve():
            raise AevbError(f"--out {out} is the input file; choose another path")
    if not out.parent.is_dir():
        raise AevbError(f"cannot write {out}: folder {out.parent} does not exist")
    return out


def cmd_eval(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from .evaluate import bits_per_dim, elbo_terms, log_likelihood, summarize
    from .files import atomic_write_text

    model, train_cfg = _load_run(args)
    k = args.k or train_cfg.eval_k
    x, _, source = _run_data(args, model, train_cfg)
    terms = elbo_terms(model, x, seed=args.seed)
    with tqdm(total=x.shape[0], unit="ex", desc=f"log p(x), k={k}", leave=False,
              disable=args.no_progress or None) as bar:
        ll = log_likelihood(model, x, k=k, batch_size=args.batch_size, seed=args.seed, on_batch=bar.update)
    d = model.config.data_dim
    res: dict[str, Any] = {"data": source, "examples": x.shape[0], "binarize": train_cfg.binarize,
                           "likelihood": model.config.likelihood, "k": k, "seed": args.seed, "units": "nats per example"}
    for name, v in (("elbo", terms.elbo), ("log_px_z", terms.log_px_z), ("kl", terms.kl), ("log_likelihood", ll)):
        res[name], res[name + "_se"] = summarize(v)
    res["bits_per_dim"] = summarize(bits_per_dim(ll, d))[0]
    tag = f"file_{Path(args.data).stem}" if args.data else args.split  # a file never overwrites a split's result
    atomic_write_text(Path(args.run) / f"eval_{tag}.json", json.dumps(res, indent=2) + "\n")
    print(f"{source}: {res['examples']} examples, {model.config.likelihood} likelihood, binarisation {res['binarize']}")
    print(f"  ELBO      {res['elbo']:10.3f} ± {res['elbo_se']:.3f} nats  "
          f"(E log p(x|z) {res['log_px_z']:.3f}, KL {res['kl']:.3f})")
    print(f"  log p(x)  {res['log_likelihood']:10.3f} ± {res['log_likelihood_se']:.3f} nats  (importance sampled, k={k})")
    print(f"  bits/dim  {res['bits_per_dim']:10.4f}  (-log2 p(x) / {d})")


def _write_images_or_table(out: Path, x: torch.Tensor, is_image: bool, ncols: int | None = None) -> None:
    from . import plots
    from .files import save_table

    if out.suffix.lower() == ".png":
        if not is_image:
            raise AevbError("a PNG grid needs image data; use a .npy or .csv --out for tables")
        plots.save(plots.image_grid(x.cpu().numpy(), ncols), out)
    else:
        save_table(out, {"x": x.reshape(x.shape[0], -1).cpu().numpy()})


def cmd_sample(args: argparse.Namespace) -> None:
    model, _ = _load_run(args)
    is_image = len(model.config.data_shape) == 2
    out = _out(args, "samples.png" if is_image else "samples.csv")
    x = model.sample(args.n, torch.Generator().manual_seed(args.seed), mean=not args.draw)
    _write_images_or_table(out, x, is_image)
    print(f"{args.n} samples written to {out}")


def cmd_reconstruct(args: argparse.Namespace) -> None:
    model, train_cfg = _load_run(args)
    x, _, source = _run_data(args, model, train_cfg)
    is_image = len(model.config.data_shape) == 2
    out = _out(args, "reconstructions.png" if is_image else "reconstructions.csv", [args.data])
    x = x[: args.n] if args.n > 0 else x
    with torch.no_grad():
        xr = model.decode(model.encode(x).mean).mean.reshape(x.shape)
    if out.suffix.lower() == ".png" and is_image:  # rows of inputs above rows of reconstructions
        ncols = min(8, x.shape[0])
        pairs = [t for i in range(0, x.shape[0], ncols) for t in (x[i:i + ncols], xr[i:i + ncols])]
        pad = [torch.cat([p, torch.ones(ncols - p.shape[0], *p.shape[1:])]) for p in pairs]
        _write_images_or_table(out, torch.cat(pad), True, ncols)
    else:
        _write_images_or_table(out, xr, is_image)
    print(f"{x.shape[0]} reconstructions of {source} written to {out}")


def cmd_encode(args: argparse.Namespace) -> None:
    from . import plots
    from .files import save_table

    model, train_cfg = _load_run(args)
    x, labels, source = _run_data(args, model, train_cfg)
    out = _out(args, f"encoded_{'file_' + Path(args.data).stem if args.data else args.split}.npz", [args.data])
    with torch.no_grad():
        q = model.encode(x)
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
    from . import plots

    model, _ = _load_run(args)
    if model.config.latent_dim != 2 or len(model.config.data_shape) != 2:
        raise AevbError(f"the manifold needs a 2-D latent and image data; this run has latent_dim "
                        f"{model.config.latent_dim} and data shape {model.config.data_shape}")
    out = _out(args, "manifold.png")
    plots.save(plots.image_grid(plots.manifold_images(model, args.n), args.n), out)
    print(f"{args.n}x{args.n} manifold written to {out}")


def cmd_plot(args: argparse.Namespace) -> None:
    from . import plots
    from .checkpoint import read_config
    from .train import read_metrics

    read_config(args.run)
    records = read_metrics(args.run)
    if not records:
        raise AevbError(f"{args.run} has no metrics yet (metrics.jsonl is empty or missing)")
    out = _out(args, "curves.png")
    plots.save(plots.curves(records), out)
    print(f"training curves written to {out}")


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "reconstruct": cmd_reconstruct,
            "encode": cmd_encode, "manifold": cmd_manifold, "plot": cmd_plot}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `aevb` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except AevbError as e:
        print(f"aevb: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("aevb: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
