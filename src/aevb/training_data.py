"""The rows a training run steps through: the dataset loaded and checked against the model's config
(shape, classes, support, binarisation), moved to the training device with their labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import torch

from . import distributed, memory
from .config import ModelConfig, TrainConfig
from .data import Dataset, load_dataset
from .errors import AevbError
from .preprocess import check_data, check_labels, fit_to_data, resolve_binarize, split


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when available, else CPU; asking for CUDA without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AevbError("--device cuda was asked for, but CUDA is not available on this machine")
    return torch.device(name)


class TrainingData(NamedTuple):
    """The training and validation rows on the training `device`, with their labels (a conditional model) or None."""

    device: torch.device
    x_train: torch.Tensor
    y_train: torch.Tensor | None
    x_valid: torch.Tensor
    y_valid: torch.Tensor | None


def load_training_data(
    model_config: ModelConfig,
    train_config: TrainConfig,
    dataset: Dataset | None,
    data_dir: str | Path | None,
    ctx: distributed.Context,
) -> tuple[ModelConfig, TrainConfig, TrainingData]:
    """The configs resolved against the data (its shape, label classes, binarisation) and the data."""
    if dataset is None:
        dataset = load_dataset(train_config.dataset, data_dir)
    model_config = fit_to_data(model_config, dataset)
    if train_config.free_bits > 0 and model_config.prior != "normal":
        raise AevbError("--free-bits needs --prior normal (the KL of a mixture prior does not split per dimension)")
    if train_config.free_bits > 0 and model_config.flow != "none":
        raise AevbError("--free-bits needs --flow none (the KL of a flow posterior does not split per dimension)")
    if train_config.free_bits > 0 and len(model_config.layers) > 1:
        raise AevbError("--free-bits is for one latent layer (a stack's KL does not split per latent dimension)")
    binarize = resolve_binarize(train_config.binarize, model_config.likelihood, dataset)
    train_config = dataclasses.replace(train_config, binarize=binarize)
    device = resolve_device(train_config.device)
    if device.type == "cuda" and ctx.distributed:
        device = torch.device("cuda", torch.cuda.current_device())  # this rank's GPU (LOCAL_RANK)
    x_train = check_data(split(dataset, "train", binarize), model_config, f"{dataset.name} (train)")
    x_valid = check_data(split(dataset, "valid", binarize), model_config, f"{dataset.name} (valid)")
    with memory.allocating(f"moving {dataset.name} ({memory.size(x_train.nbytes + x_valid.nbytes)}) to {device}"):
        x_train, x_valid = x_train.to(device), x_valid.to(device)
    y_train, y_valid = (
        None if y is None else y.to(device)
        for y in (
            check_labels(dataset.train_labels, x_train.shape[0], model_config, f"{dataset.name} (train)"),
            check_labels(dataset.valid_labels, x_valid.shape[0], model_config, f"{dataset.name} (valid)"),
        )
    )
    return model_config, train_config, TrainingData(device, x_train, y_train, x_valid, y_valid)
