"""`aevb reproduce figure2|figure3|figure4|figure5`: the experiments of Kingma & Welling (2013), Section 5."""

from __future__ import annotations

import argparse
from pathlib import Path

from .parser import at_least, positive

FIGURES = {
    "figure2": "lower bound vs training samples, AEVB vs wake-sleep, per Nz (MNIST or Frey Face)",
    "figure3": "importance-sampled log p(x) vs training samples, AEVB vs wake-sleep vs MCEM (MNIST, Nz = 3)",
    "figure4": "learned 2-D manifolds of Frey Face and MNIST (AEVB, Nz = 2)",
    "figure5": "random samples from MNIST AEVB models with Nz = 2, 5, 10, 20",
}


def _budgets(name: str) -> tuple[str, str]:
    from ..reproduce import figure2, figure3, figure4, figure5

    if name == "figure2":
        d = ", ".join(f"{k} {v:.0e}" for k, v in figure2.DEFAULT_BUDGET.items())
        return d, f"{figure2.FULL_BUDGET:.0e}"
    mod = {"figure3": figure3, "figure4": figure4, "figure5": figure5}[name]
    return f"{mod.DEFAULT_BUDGET:.0e}", f"{mod.FULL_BUDGET:.0e}"


def register(subparsers) -> None:
    r = subparsers.add_parser("reproduce", help="regenerate a figure of the paper (Section 5) as CSV + PNG")
    figs = r.add_subparsers(dest="figure", required=True, parser_class=type(r))
    for name, help in FIGURES.items():
        default, full = _budgets(name)
        f = figs.add_parser(name, help=help, description=help)
        size = f.add_mutually_exclusive_group()
        size.add_argument(
            "--budget",
            type=positive,
            default=None,
            help=f"training samples evaluated per curve/model (default: the reduced run, {default})",
        )
        size.add_argument("--full", action="store_true", help=f"the paper's scale ({full} samples per curve)")
        f.add_argument(
            "--out",
            default="runs/reproduce",
            help="folder for the CSV and PNG files, created if missing; this figure's files from an earlier run there "
            "are replaced (default: %(default)s)",
        )
        f.add_argument(
            "--data-dir",
            default=None,
            help="folder of the built-in datasets (default: $AEVB_DATA_DIR or ~/.cache/aevb)",
        )
        f.add_argument(
            "--seed", type=int, default=0, help="seed of the initialisation and training noise (default: %(default)s)"
        )
        f.add_argument(
            "--eval-n",
            type=positive,
            default=500 if name == "figure3" else 1000,
            help="train and test points the curves are evaluated on (default: %(default)s)",
        )
        f.add_argument(
            "--points",
            type=at_least(1),
            default=10 if name == "figure2" else 6,
            help="evaluation points per curve, log-spaced in training samples (default: %(default)s)",
        )
        f.add_argument("--no-progress", action="store_true", help="no progress bar")
        if name == "figure2":
            f.add_argument(
                "--dataset", choices=("mnist", "frey-face"), default="mnist", help="dataset (default: %(default)s)"
            )
            f.add_argument(
                "--latents",
                type=positive,
                nargs="+",
                default=None,
                metavar="NZ",
                help="latent sizes (default: 3 5 10 20 200 for mnist, 2 5 10 20 for frey-face)",
            )
        elif name == "figure3":
            f.add_argument(
                "--k",
                type=positive,
                default=100,
                help="importance samples per point for log p(x) (default: %(default)s)",
            )
            f.add_argument(
                "--train-sizes",
                type=positive,
                nargs="+",
                default=[1000, 50000],
                metavar="N",
                help="training-set sizes (first N MNIST training images) (default: %(default)s)",
            )
            f.add_argument(
                "--methods",
                nargs="+",
                choices=("aevb", "wake-sleep", "mcem"),
                default=["aevb", "wake-sleep", "mcem"],
                help="learners to compare (default: %(default)s)",
            )
        elif name == "figure4":
            f.add_argument(
                "--dataset",
                choices=("frey-face", "mnist", "both"),
                default="both",
                help="dataset(s) (default: %(default)s)",
            )
            f.add_argument(
                "--grid",
                type=at_least(2),
                default=20,
                help="grid points per axis of the manifold (default: %(default)s)",
            )
        else:
            f.add_argument(
                "--latents",
                type=positive,
                nargs="+",
                default=[2, 5, 10, 20],
                metavar="NZ",
                help="latent sizes, one model each (default: %(default)s)",
            )


def cmd_reproduce(args: argparse.Namespace) -> None:
    """Run one figure's experiment; print the files written."""
    common = dict(
        data_dir=args.data_dir, points=args.points, n_eval=args.eval_n, seed=args.seed, progress=not args.no_progress
    )
    created = not Path(args.out).exists()
    try:
        paths = _run_figure(args, common)
    except BaseException:
        # a failed figure leaves no folder behind that it created and wrote nothing into
        if created and Path(args.out).is_dir() and not any(Path(args.out).iterdir()):
            Path(args.out).rmdir()
        raise
    for p in paths:
        print(p)


def _run_figure(args: argparse.Namespace, common: dict) -> list[Path]:
    """The files written by `args.figure`'s experiment."""
    from ..reproduce import figure2, figure3, figure4, figure5

    if args.figure == "figure2":
        budget = figure2.FULL_BUDGET if args.full else args.budget or figure2.DEFAULT_BUDGET[args.dataset]
        paths = figure2.run(args.dataset, budget, args.out, latents=args.latents, **common)
    elif args.figure == "figure3":
        budget = figure3.FULL_BUDGET if args.full else args.budget or figure3.DEFAULT_BUDGET
        paths = figure3.run(budget, args.out, train_sizes=args.train_sizes, methods=args.methods, k=args.k, **common)
    elif args.figure == "figure4":
        budget = figure4.FULL_BUDGET if args.full else args.budget or figure4.DEFAULT_BUDGET
        datasets = figure4.DATASETS if args.dataset == "both" else (args.dataset,)
        paths = figure4.run(datasets, budget, args.out, grid=args.grid, **common)
    else:
        budget = figure5.FULL_BUDGET if args.full else args.budget or figure5.DEFAULT_BUDGET
        paths = figure5.run(budget, args.out, latents=args.latents, **common)
    return paths
