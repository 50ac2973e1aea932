"""What the model sees: binarisation rules and the checks that data fits a likelihood and a model.

Binarisation (for the `bernoulli` likelihood on grey-level data in [0, 1]):
- dynamic: every training minibatch is redrawn x ~ Bernoulli(grey level) (stochastic binarisation);
- static:  the training set is drawn once, with a fixed seed;
- none:    grey levels are used as Bernoulli targets as they are (the log-likelihood is then not a
           normalised density; numbers are not comparable with the literature).
With dynamic and static, the validation and test sets are binarised once with fixed seeds
(BINARIZE_SEEDS), the same for every run, so that runs are evaluated on the same binary data.
"""

from __future__ import annotations

import dataclasses

import torch

from .config import ModelConfig
from .data import Dataset
from .errors import DataError
from .likelihoods import make_likelihood, parse_columns

BINARIZE_SEEDS = {"train": 0, "valid": 1, "test": 2}


def resolve_binarize(setting: str, likelihood: str, dataset: Dataset) -> str:
    """The binarisation actually used: `auto` is dynamic for bernoulli on grey levels, else none."""
    binary = dataset.is_binary
    if setting == "auto":
        return "dynamic" if likelihood == "bernoulli" and not binary else "none"
    if setting != "none" and likelihood != "bernoulli":
        raise DataError(f"--binarize {setting} applies to the bernoulli likelihood only, not {likelihood}")
    return "none" if binary else setting


def binarize_once(x: torch.Tensor, seed: int) -> torch.Tensor:
    """A fixed stochastic binarisation: x ~ Bernoulli(x) drawn with torch.Generator(seed)."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    return torch.bernoulli(x, generator=g)


def split(dataset: Dataset, name: str, binarize: str) -> torch.Tensor:
    """One split (train/valid/test) as the model sees it; train stays grey under dynamic."""
    x = getattr(dataset, name)
    if binarize == "static" or (binarize == "dynamic" and name != "train"):
        return binarize_once(x, BINARIZE_SEEDS[name])
    return x


def check_data(x: torch.Tensor, config: ModelConfig, source: str) -> torch.Tensor:
    """x as a float32 (N, *data_shape) tensor that the model can score, or a one-line DataError: the
    likelihood head's `check` says whether every value is in its support."""
    if x.shape[0] == 0:
        raise DataError(f"{source} is empty")
    if x.ndim < 2:
        raise DataError(f"{source} must be 2-D (rows x features), got shape {tuple(x.shape)}")
    d = x[0].numel()
    if d != config.data_dim:
        raise DataError(f"{source} has {d} features per row; the model was trained on {config.data_dim}")
    x = x.reshape(x.shape[0], *config.data_shape).float()
    if not torch.isfinite(x).all():
        raise DataError(f"{source} contains NaN or inf")
    if config.columns:  # mixed: its column groups must cover the data's columns before it can be built
        n = sum(count for _, count, _ in parse_columns(config.columns))
        if n != d:
            raise DataError(f"{source} has {d} features per row; --columns {config.columns} names {n}")
    problem = make_likelihood(config).check(x.reshape(x.shape[0], -1))
    if problem is not None:
        raise DataError(f"{source} {problem}")
    return x


def fit_to_data(config: ModelConfig, dataset: Dataset) -> ModelConfig:
    """`config` resolved against the data: its data_shape, and a conditional model's label classes."""
    try:
        config = dataclasses.replace(config, data_shape=tuple(dataset.shape))
    except ValueError as e:  # e.g. --arch conv on a table
        raise DataError(f"{dataset.name}: {e}") from None
    return resolve_classes(config, dataset)


def resolve_classes(config: ModelConfig, dataset: Dataset) -> ModelConfig:
    """`config` with `classes` set for a conditional model (max label + 1 when 0), after checking that
    every split has labels in 0..classes-1; `config` unchanged for an unconditional one."""
    if not config.conditional:
        return config
    labels = {name: getattr(dataset, f"{name}_labels") for name in ("train", "valid", "test")}
    missing = [name for name, y in labels.items() if y is None]
    if missing:
        raise DataError(
            f"{dataset.name} has no labels ({', '.join(missing)}): --condition-on labels needs a labelled dataset "
            "(mnist, fashion-mnist, digits, or a .npz/.csv with labels y)"
        )
    low = min(int(y.min()) for y in labels.values() if len(y))
    high = max(int(y.max()) for y in labels.values() if len(y))
    classes = config.classes or high + 1
    if low < 0 or high >= classes:
        raise DataError(f"{dataset.name} has labels {low}..{high}; --classes {classes} needs labels 0..{classes - 1}")
    return dataclasses.replace(config, classes=classes)


def check_labels(y: torch.Tensor | None, n: int, config: ModelConfig, source: str) -> torch.Tensor | None:
    """The labels a conditional model needs for n rows of `source` (int64 (n,) in 0..classes-1), or a
    one-line DataError; None for an unconditional model."""
    if not config.conditional:
        return None
    if y is None:
        raise DataError(f"{source} has no labels; this model is conditioned on labels (--condition-on labels)")
    if y.shape != (n,):
        raise DataError(f"{source} has {y.shape[0]} labels for {n} rows")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= config.classes):
        raise DataError(
            f"{source} has labels {int(y.min())}..{int(y.max())}; the model knows the classes 0..{config.classes - 1}"
        )
    return y.to(torch.int64)


def run_data(
    model_config: ModelConfig,
    binarize: str,
    dataset: str,
    split_name: str = "test",
    data_file: str | None = None,
    data_dir: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """(x, labels or None, description) of what a run is evaluated on: a split of its dataset
    (binarised once with the split's seed when the run binarises, the train split included), or a
    user file (all rows, uint8 images / 255, binarised once with the test seed when the run binarises)."""
    from .data import load_dataset
    from .data.load import read_user_file

    if data_file is None:
        ds = load_dataset(dataset, data_dir)
        x, y, seed = getattr(ds, split_name), getattr(ds, f"{split_name}_labels"), BINARIZE_SEEDS[split_name]
        where, source = f"{ds.name} ({split_name})", f"{ds.name} {split_name}"
    else:
        (x, y), seed = read_user_file(data_file), BINARIZE_SEEDS["test"]
        where = source = data_file
    # checked before binarising (bernoulli needs [0, 1]); every split, train too, is scored on its
    # fixed draw: under dynamic, grey train levels would be scored as Bernoulli targets. A draw
    # leaves data that is already 0/1 unchanged.
    x = check_data(x, model_config, where)
    if binarize in ("dynamic", "static"):
        x = binarize_once(x, seed)
    return x, y, source
