"""What the commands that read a trained run share: the run's model, its data and labels, output paths."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from .. import config as C
from .. import custom, plots
from ..checkpoint import load, read_config
from ..errors import AevbError
from ..files import save_table
from ..model import VAE
from ..preprocess import check_labels, run_data
from .parser import RUN_SPLIT


def load_run(args: argparse.Namespace):
    """The run's model (eval mode, CPU) and its training config; a run trained with its own networks
    gets them from `--module` (built by that import path, their weights read from the run)."""
    model_cfg, train_cfg = read_config(args.run)
    train_cfg = train_cfg or C.TrainConfig()
    module = check_module(args.run, model_cfg, args.module)
    if module is None:
        return load(args.run), train_cfg
    encoder, decoder = custom.networks(module, model_cfg)
    return load(args.run, encoder=encoder, decoder=decoder), train_cfg


def check_module(run: str | Path, model_cfg: C.ModelConfig, module: str | None) -> str | None:
    """`--module`, checked to be given exactly when the run was trained with its own networks."""
    custom.check_given(
        model_cfg,
        bool(module),
        str(run),
        has="was trained with",
        give="pass --module PKG.MOD:BUILD, the import path of the function build(config) -> (encoder, decoder) "
        "that makes them",
        without="--module is for runs trained with your own networks",
    )
    return module


def custom_model(model_cfg: C.ModelConfig, module: str, seed: int = 0) -> VAE:
    """VAE(model_cfg) with the networks that the import path `module` builds (torch seeded by `seed`)."""
    encoder, decoder = custom.networks(module, model_cfg, seed)
    try:
        return VAE(model_cfg, encoder, decoder)
    except ValueError as e:
        raise AevbError(f"--module {module}: {e}") from None


def read_data(args: argparse.Namespace, model, train_cfg: C.TrainConfig):
    """(x, labels, description) of the split or --data file the command works on; a conditional
    run's labels are checked (present, in its classes). A --split other than the default with --data is refused:
    the file is read whole."""
    if args.data is not None and args.split != RUN_SPLIT:
        raise AevbError(f"--split {args.split} and --data {args.data}: give one (--data reads the whole file)")
    x, y, source = run_data(model.config, train_cfg.binarize, train_cfg.dataset, args.split, args.data, args.data_dir)
    if model.config.conditional:
        y = check_labels(y, x.shape[0], model.config, source)
    return x, y, source


def condition(model, y: torch.Tensor | None) -> torch.Tensor | None:
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


def out_path(
    args: argparse.Namespace, default: str, inputs: Sequence[str | None] = (), suffix: str | None = None
) -> Path:
    """`--out`, or RUN/`default`; refused when it is one of the `inputs` files, its folder is missing, or (for
    a command that writes one format) it does not end in `suffix`."""
    out = Path(args.out) if args.out else Path(args.run) / default
    if suffix is not None and out.suffix.lower() != suffix:
        raise AevbError(f"--out {out}: this command writes {suffix} files; give a path ending in {suffix}")
    return in_existing_folder(not_an_input(out, inputs))


def not_an_input(out: Path, inputs: Sequence[str | None]) -> Path:
    """`out`, refused (one line) when it is one of the `inputs` files: never overwrite what the user handed in."""
    for i in inputs:
        if i is not None and Path(i).exists() and out.exists() and out.resolve() == Path(i).resolve():
            raise AevbError(f"--out {out} is the input file; choose another path")
    return out


def in_existing_folder(path: Path) -> Path:
    """`path`, refused (one line) when the folder it would be written in does not exist."""
    if not path.parent.is_dir():
        raise AevbError(f"cannot write {path}: folder {path.parent} does not exist")
    return path


def unused_name(folder: str | Path, name: str) -> str:
    """`name`, or name-2, name-3, ... (before the suffix): the first that `folder` does not hold, so that
    a default output path never replaces a file written before (the samples.png of training, say)."""
    folder, stem, suffix = Path(folder), Path(name).stem, Path(name).suffix
    candidate, i = name, 1
    while (folder / candidate).exists():
        i += 1
        candidate = f"{stem}-{i}{suffix}"
    return candidate


def write_images_or_table(out: Path, x: torch.Tensor, is_image: bool, ncols: int | None = None) -> None:
    """x (N, ...) as a PNG grid of images (`out` ending in .png) or as a table of flattened rows."""
    if out.suffix.lower() == ".png":
        if not is_image:
            raise AevbError("a PNG grid needs image data; use a .npy or .csv --out for tables")
        plots.save(plots.image_grid(x.cpu().numpy(), ncols), out)
    else:
        save_table(out, {"x": x.reshape(x.shape[0], -1).cpu().numpy()})
