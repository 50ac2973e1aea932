"""Training: a minibatch loop that only reduces what the objectives return, and `train()`, which
loads the data, builds or resumes the model and keeps the run directory up to date.

The training set lives on the device as one tensor and is indexed with a fresh permutation each
epoch (no per-item Dataset or collate). All training randomness (permutations, dynamic
binarisation, reparameterisation noise) comes from one torch.Generator that is checkpointed, so a
resumed run ends with exactly the parameters of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

from . import checkpoint as ckpt
from .config import ModelConfig, TrainConfig
from .data import Dataset, load_dataset
from .errors import AevbError, CheckpointError
from .evaluate import elbo_terms
from .files import atomic_write_text
from .model import VAE
from .objectives import elbo, iwae
from .preprocess import check_data, resolve_binarize, split

OBJECTIVES: dict[str, Callable[[VAE, torch.Tensor, TrainConfig, torch.Generator], torch.Tensor]] = {
    "elbo": lambda m, x, c, g: elbo(m, x, c.samples, c.estimator, g).elbo,
    "iwae": lambda m, x, c, g: iwae(m, x, c.k, g),
}
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adagrad": torch.optim.Adagrad,
    "sgd": torch.optim.SGD,
}


class Step(NamedTuple):
    """What the step hook sees after each optimiser step."""

    epoch: int
    epochs: int
    done: int  # examples of this epoch seen so far
    total: int  # examples per epoch
    batch_sum: torch.Tensor  # sum over the batch of the per-example objective (nats), on the device


StepHook = Callable[[Step], None]
EpochHook = Callable[[dict[str, Any]], None]  # the epoch's metrics record


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when available, else CPU; asking for CUDA without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AevbError("--device cuda was asked for, but CUDA is not available on this machine")
    return torch.device(name)


def train_epoch(
    model: VAE,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    on_step: StepHook | None = None,
    epoch: int = 1,
) -> tuple[torch.Tensor, int]:
    """One pass over x in minibatches of config.batch_size, maximising the objective.

    Returns (sum over examples of the per-example objective in nats, number of steps).
    """
    model.train()
    objective = OBJECTIVES[config.objective]
    perm = torch.randperm(x.shape[0], generator=generator, device=x.device)
    total = torch.zeros((), device=x.device)
    steps = 0
    for i in range(0, x.shape[0], config.batch_size):
        xb = x[perm[i : i + config.batch_size]]
        if config.binarize == "dynamic":
            xb = torch.bernoulli(xb, generator=generator)
        per_example = objective(model, xb, config, generator)  # (B,)
        loss = -per_example.mean()  # the negative bound, per example
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        batch_sum = per_example.detach().sum()
        total += batch_sum
        steps += 1
        if on_step is not None:
            on_step(Step(epoch, config.epochs, min(i + config.batch_size, x.shape[0]), x.shape[0], batch_sum))
    return total, steps


def train(
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    run_dir: str | Path | None = None,
    *,
    data_dir: str | Path | None = None,
    resume: bool = False,
    dataset: Dataset | None = None,
    on_step: StepHook | None = None,
    on_epoch: EpochHook | None = None,
) -> VAE:
    """Fit a VAE and return it. With `run_dir`, keep config, metrics and checkpoints there.

    resume=True continues the run in `run_dir` from its last checkpoint with its stored config;
    only `train_config.epochs` is taken from the arguments (to train longer), when given.
    """
    run_dir = Path(run_dir) if run_dir is not None else None
    if resume:
        if run_dir is None:
            raise AevbError("resume needs a run directory")
        model_config, stored = ckpt.read_config(run_dir)
        if stored is None:
            raise CheckpointError(f"{run_dir}/config.json has no training config to resume from")
        epochs = train_config.epochs if train_config is not None else stored.epochs
        train_config = dataclasses.replace(stored, epochs=epochs)
    elif run_dir is not None and (run_dir / ckpt.CONFIG).exists():
        raise AevbError(f"{run_dir} already holds a run; resume it with --resume or choose another --out")
    elif run_dir is not None and run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise AevbError(f"{run_dir} exists and is not an empty directory; choose another --out")
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()

    if dataset is None:
        dataset = load_dataset(train_config.dataset, data_dir)
    model_config = dataclasses.replace(model_config, data_shape=tuple(dataset.shape))
    binarize = resolve_binarize(train_config.binarize, model_config.likelihood, dataset)
    train_config = dataclasses.replace(train_config, binarize=binarize)
    device = resolve_device(train_config.device)
    x_train = check_data(split(dataset, "train", binarize), model_config, f"{dataset.name} (train)").to(device)
    x_valid = check_data(split(dataset, "valid", binarize), model_config, f"{dataset.name} (valid)").to(device)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_config.seed)
        model = VAE(model_config).to(device)
    optimizer = OPTIMIZERS[train_config.optimizer](
        model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay
    )
    generator = torch.Generator(device=device).manual_seed(train_config.seed)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "examples": 0, "seconds": 0.0}
    if resume:
        # a run killed before its first checkpoint starts over: same seed, same result
        if (run_dir / ckpt.CHECKPOINT).exists():
            state = ckpt.load_checkpoint(run_dir, model, optimizer, generator)
        _truncate_metrics(run_dir, state["epoch"])
    if run_dir is not None:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AevbError(f"cannot create run directory {run_dir}: {e.strerror or e}") from None
        ckpt.save_config(run_dir, model_config, train_config)
        if not resume:
            ckpt.save_model(run_dir, model)

    for epoch in range(state["epoch"] + 1, train_config.epochs + 1):
        t0 = time.perf_counter()
        total, steps = train_epoch(model, optimizer, x_train, train_config, generator, on_step, epoch)
        train_objective = total.item() / x_train.shape[0]
        if not torch.isfinite(total):
            raise AevbError(
                f"training diverged in epoch {epoch} (objective is {train_objective}); "
                f"try a smaller --lr. The last good checkpoint is epoch {state['epoch']}"
            )
        valid = elbo_terms(model, x_valid, seed=train_config.seed)
        state = {
            "epoch": epoch,
            "step": state["step"] + steps,
            "examples": state["examples"] + x_train.shape[0],
            "seconds": state["seconds"] + time.perf_counter() - t0,
        }
        record = {
            **state,
            f"train_{train_config.objective}": train_objective,
            "valid_elbo": valid.elbo.mean().item(),
            "valid_log_px_z": valid.log_px_z.mean().item(),
            "valid_kl": valid.kl.mean().item(),
        }
        if run_dir is not None:
            _append_metrics(run_dir, record)
            ckpt.save_checkpoint(run_dir, model, optimizer, generator, state)
            ckpt.save_model(run_dir, model)
        if on_epoch is not None:
            on_epoch(record)
    return model.eval()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run's metrics.jsonl (a torn last line is ignored)."""
    path = Path(run_dir) / ckpt.METRICS
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / ckpt.METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _truncate_metrics(run_dir: Path, epoch: int) -> None:
    # epochs logged after the checkpoint are trained again on resume: drop their records
    kept = [r for r in read_metrics(run_dir) if r.get("epoch", 0) <= epoch]
    atomic_write_text(run_dir / ckpt.METRICS, "".join(json.dumps(r) + "\n" for r in kept))
