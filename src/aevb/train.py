"""Training: `train()` loads the data, builds or resumes the model, runs the epochs of
`aevb.loop.epoch_steps` and keeps the run directory (`aevb.rundir`) up to date, saving whenever
the loop says a checkpoint is due.

All training randomness (permutations, dynamic binarisation, reparameterisation noise) comes from
one torch.Generator that is checkpointed, and so is the position inside the epoch, so a run resumed
from any checkpoint (at an epoch's end or in the middle of one) ends with exactly the parameters of
an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from . import custom, distributed, gradients, memory, rundir, speed
from .config import ModelConfig, TrainConfig
from .data import Dataset
from .data.python import from_python, is_python_name
from .errors import AevbError, DivergedError
from .evaluate import elbo_terms
from .loop import (  # noqa: F401  (kl_weight_at stays importable from aevb.train)
    EpochHook,
    Fitting,
    Position,
    Step,
    StepHook,
    clock_deadline,
    epoch_steps,
    kl_weight_at,
    stop_seconds,
)
from .model import VAE
from .optimizers import OPTIMIZERS
from .training_data import TrainingData, load_training_data


def train(
    model_config: ModelConfig | VAE | None = None,
    train_config: TrainConfig | None = None,
    run_dir: str | Path | None = None,
    *,
    data_dir: str | Path | None = None,
    resume: bool = False,
    dataset: Dataset | None = None,
    data: Any = None,
    labels: Any = None,
    valid: Any = None,
    valid_labels: Any = None,
    on_step: StepHook | None = None,
    on_epoch: EpochHook | None = None,
) -> VAE:
    """Fit a VAE and return it. With `run_dir`, keep config, metrics and checkpoints there.

    `model_config` may be a built VAE instead (your own networks, aevb.custom): it is trained as it is,
    seeded by you; its config must fit the data (and a resumed run's stored config).

    resume=True continues the run in `run_dir` from its last checkpoint with its stored config;
    only its RESUMABLE_FIELDS (epochs, time limit, checkpoint cadence) are taken from `train_config`, when given.
    With a time limit (train_config.time_limit minutes of training, over all resumes) the run may stop
    before its last epoch, inside one: it is then saved there (`rundir.progress` says where) and resumes
    from there. A run directory is locked while training writes it: a second trainer gets an AevbError.
    `data` (a NumPy array, torch tensor, pandas DataFrame or in-memory torch Dataset, rows first) with optional
    `labels`, `valid` rows and their `valid_labels` trains on data from Python (`aevb.data.python.from_python`)
    instead of `train_config.dataset`; the run records "python:<shape>" as its dataset, and resuming it needs
    `data` again.
    """
    if data is not None:
        if dataset is not None:
            raise AevbError("pass data= or dataset=, not both")
        dataset = from_python(data, labels, valid, valid_labels)
    elif labels is not None or valid is not None or valid_labels is not None:
        raise AevbError("labels=, valid= and valid_labels= go with data=")
    ctx = distributed.current()
    agreed = False
    try:
        if run_dir is None and resume:
            raise AevbError("resume needs a run directory")
        with rundir.opened(run_dir, resume, writer=ctx.is_main) as run:  # rank 0 alone checks, locks, writes
            training = _setup(model_config, train_config, run, data_dir, resume, dataset, ctx)
            agreed = True  # every rank got through the setup: only then does training start anywhere
            distributed.agree(True, ctx)
            if not ctx.is_main:
                on_step = on_epoch = None  # progress and logs come from rank 0
            return _epochs(training, run, on_step, on_epoch)
    except BaseException:
        if not agreed:  # tell the other ranks, which would otherwise wait for this one
            distributed.agree(False, ctx)
        raise


@dataclasses.dataclass
class Training:
    """What the epochs need and advance, once every rank got through the setup."""

    config: TrainConfig
    fitting: Fitting
    data: TrainingData
    state: dict[str, Any]  # the run's counters at its last epoch's end (rundir.START_STATE's keys)
    position: Position | None  # where a checkpoint inside an epoch left the next epoch, else None


def _setup(
    model_config: ModelConfig | None,
    train_config: TrainConfig | None,
    run: rundir.RunDir | None,
    data_dir: str | Path | None,
    resume: bool,
    dataset: Dataset | None,
    ctx: distributed.Context,
) -> Training:
    """Configs (a resumed run's stored ones), data, model, optimiser and generator, restored from the
    last checkpoint when resuming; the run directory gets its config and first weights."""
    built = model_config if isinstance(model_config, VAE) else None  # your own networks, built by the caller
    if built is not None:
        model_config = built.config
    if resume:
        assert run is not None
        model_config, train_config = run.resumed_configs(train_config)
    model_config, train_config = model_config or ModelConfig(), train_config or TrainConfig()
    where = str(run.path) if resume else f"the data ({train_config.dataset})"
    custom.check_given(
        model_config,
        built is not None,
        str(run.path) if resume else "this config",
        give="train the model built with them, train(VAE(config, encoder=..., decoder=...), ...) "
        "(the CLI: --module PKG.MOD:BUILD)",
        without="train it from its config",
    )
    if dataset is not None and is_python_name(dataset.name) and not resume:
        train_config = dataclasses.replace(train_config, dataset=dataset.name)  # recorded in config.json
    if dataset is None and is_python_name(train_config.dataset):
        raise AevbError(
            f"this run was trained on data from Python ({train_config.dataset}): "
            "resume it from Python with aevb.train(..., resume=True, data=...) and the same rows"
        )
    if run is not None and not resume:
        run.begin(model_config, train_config)  # before the data: a run stopped from here on is resumable
    model_config, train_config, data = load_training_data(model_config, train_config, dataset, data_dir, ctx)
    model, optimizer, generator = _build(model_config, train_config, data, built, where)
    if train_config.gradient != "standard":  # stl and dreg need q.detached(): say so before the first step
        with torch.no_grad():
            y = None if data.y_train is None else data.y_train[:1]
            try:
                gradients.require_detached(model.encode(data.x_train[:1], y))
            except ValueError as e:
                raise AevbError(str(e)) from None
    state, position = dict(rundir.START_STATE), None
    if run is not None:
        if resume:
            state, position = run.restore(model, optimizer, generator, data.x_train.shape[0], data.device)
        run.start(model_config, train_config, model)
    return Training(train_config, Fitting.of(model, optimizer, generator, train_config, ctx), data, state, position)


def _build(
    model_config: ModelConfig, train_config: TrainConfig, data: TrainingData, built: VAE | None, where: str
) -> tuple[VAE, torch.optim.Optimizer, torch.Generator]:
    """The seeded model, or the `built` one (checked to fit `model_config`, the config of `where`),
    standardised by the training rows if asked, its optimiser and the training generator."""
    if built is not None:
        custom.check_built(built.config, model_config, where)
        built.config = model_config  # the same but maybe for `module` ("custom" or the run's import path)
        model = built.to(data.device)
    else:
        with memory.allocating(
            lambda: _building(model_config), "choose a smaller --hidden, --latent-dim or --channels"
        ):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(train_config.seed)
                model = VAE(model_config).to(data.device)
    if model_config.standardize:  # the training split's mean and std (a resumed run reads them back)
        model.set_standardization(data.x_train)
    optimizer_class = OPTIMIZERS[train_config.optimizer]
    adam = {"betas": (train_config.adam_beta1, train_config.adam_beta2), "eps": train_config.adam_eps}
    optimizer = optimizer_class(
        model.parameters(),
        lr=train_config.lr,
        weight_decay=train_config.weight_decay,
        **(adam if train_config.optimizer == "adam" else {}),
        **speed.optimizer_options(optimizer_class, data.device),  # fused update where supported
    )
    return model, optimizer, torch.Generator(device=data.device).manual_seed(train_config.seed)


def _building(model_config: ModelConfig) -> str:
    n = memory.parameter_count(lambda: VAE(model_config))
    return "building the model" + ("" if n is None else f" ({n:,} parameters, {memory.size(4 * n)} of float32 weights)")


def _epochs(training: Training, run: rundir.RunDir | None, on_step: StepHook | None, on_epoch: EpochHook | None) -> VAE:
    """The remaining epochs; after each, its metrics record, a checkpoint and the weights. Returns the
    model, when its epochs are done or its time limit is reached (where the run was saved)."""
    config = training.config
    deadline = None if run is None else clock_deadline(config)
    trained = training.state["seconds"] + (training.position.seconds if training.position else 0.0)
    left = stop_seconds(config, trained)
    if left is not None and left <= 0:  # resumed at or past its limit (the checkpoint says so: every rank agrees)
        return training.fitting.model.eval()
    for epoch in range(training.state["epoch"] + 1, config.epochs + 1):
        what = f"training epoch {epoch} (batches of {config.batch_size} on {training.data.device})"
        with memory.allocating(what, lambda: _kept(run) + "choose a smaller --batch-size or --hidden (a new run)"):
            position, stop = _steps(training, run, epoch, on_step, deadline)
            if stop and position.done < position.perm.shape[0]:  # saved inside the epoch
                return training.fitting.model.eval()
            if position.counted == 0:
                step = training.state["step"]
                raise DivergedError(f"every step of epoch {epoch} was non-finite and skipped", step, "loss")
            record = _end_epoch(training, epoch, position)
            if run is not None:
                run.end_epoch(training.fitting, training.state, record)
                deadline = clock_deadline(config)
        if on_epoch is not None:
            on_epoch(record)
        if stop:
            break
    return training.fitting.model.eval()


def _kept(run: rundir.RunDir | None) -> str:
    """What the run directory keeps after a failure, as the start of a message ("" without one)."""
    if run is None:
        return ""
    if run.saved_at is None:
        return f"{run.path} has no checkpoint yet; "
    return f"{run.path} keeps its last checkpoint ({run.saved_at}); "


def _steps(
    training: Training, run: rundir.RunDir | None, epoch: int, on_step: StepHook | None, deadline: float | None
) -> tuple[Position, bool]:
    """The steps of epoch `epoch` from where the run stands, saving when the loop says a checkpoint is due;
    returns where the epoch stands and whether the time limit stopped it (inside the epoch: saved with
    the weights `load` reads; at its last step: the epoch's end saves)."""
    fitting, config = training.fitting, training.config
    x, y, n = training.data.x_train, training.data.y_train, training.data.x_train.shape[0]
    position = training.position or Position.start(n, fitting.generator, x.device)
    training.position = None  # the next epoch starts afresh
    stop_after = stop_seconds(config, training.state["seconds"])
    stop = False
    try:
        for tick in epoch_steps(
            fitting,
            x,
            config,
            position,
            epoch=epoch,
            y=y,
            step0=training.state["step"],
            deadline=deadline,
            stop_after=stop_after,
            seconds0=training.state["seconds"],
        ):
            if on_step is not None and tick.batch_sum is not None:
                on_step(Step(epoch, config.epochs, tick.done, n, tick.batch_sum))
            stop = tick.stop
            if tick.checkpoint and run is not None:
                (run.pause if stop else run.save)(fitting, training.state, position)
    except DivergedError as e:
        raise _diverged(e, epoch, training, run) from None
    return position, stop


def _diverged(e: DivergedError, epoch: int, training: Training, run: rundir.RunDir | None) -> DivergedError:
    """The loop's DivergedError told in the run's terms: its step, and what the run directory keeps."""
    step = training.state["step"] + e.step
    batches = -(-training.data.x_train.shape[0] // training.config.batch_size)
    where = f"at step {step} (epoch {epoch}, batch {e.step} of {batches}): the {e.what} is NaN or inf"
    if run is None:
        kept = ""
    elif run.saved_at is None:
        kept = f"; {run.path} has no checkpoint yet (--resume starts it over)"
    else:
        kept = f"; {run.path} keeps its last good checkpoint ({run.saved_at})"
    return DivergedError(
        f"training diverged {where}{kept}. Try a smaller --lr, or --nonfinite skip to drop such steps", step, e.what
    )


def _end_epoch(training: Training, epoch: int, pos: Position) -> dict[str, Any]:
    """The epoch's metrics record (with the validation ELBO); training.state moves to the epoch's end."""
    config, data = training.config, training.data
    train_objective = pos.total.item() / pos.counted
    valid = elbo_terms(training.fitting.model, data.x_valid, seed=config.seed, y=data.y_valid)
    s = training.state
    training.state = {
        "epoch": epoch,
        "step": s["step"] + pos.steps,
        "examples": s["examples"] + data.x_train.shape[0],
        "seconds": s["seconds"] + pos.seconds,
        "skipped_steps": s["skipped_steps"] + pos.skipped,
    }
    return {
        **training.state,
        # beta / warm-up / free bits: what was maximised is not the ELBO, and is named so
        ("train_objective" if config.regularised else f"train_{config.objective}"): train_objective,
        "valid_elbo": valid.elbo.mean().item(),
        "valid_log_px_z": valid.log_px_z.mean().item(),
        "valid_kl": valid.kl.mean().item(),
        "epoch_skipped_steps": pos.skipped,
        "lr": training.fitting.optimizer.param_groups[0]["lr"],  # of the epoch's last step
    }
