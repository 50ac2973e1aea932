"""Training: `train()` loads the data, builds or resumes the model, runs the epochs of
`aevb.loop.run_epoch` and keeps the run directory up to date.

All training randomness (permutations, dynamic binarisation, reparameterisation noise) comes from
one torch.Generator that is checkpointed, and so is the position inside the epoch, so a run resumed
from any checkpoint (at an epoch's end or in the middle of one) ends with exactly the parameters of
an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import checkpoint as ckpt
from . import distributed, speed
from .config import ModelConfig, TrainConfig
from .data import Dataset, load_dataset
from .errors import AevbError, CheckpointError, DivergedError
from .evaluate import elbo_terms
from .files import RunLock, atomic_write_text, remove_stale_temps
from .loop import (  # noqa: F401  (the loop's names stay importable from aevb.train)
    NOISE_SAMPLES,
    EpochHook,
    Position,
    Step,
    StepHook,
    kl_weight_at,
    run_epoch,
    training_objective,
)
from .model import VAE
from .optimizers import OPTIMIZERS
from .preprocess import check_data, check_labels, resolve_binarize, resolve_classes, split


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when available, else CPU; asking for CUDA without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AevbError("--device cuda was asked for, but CUDA is not available on this machine")
    return torch.device(name)


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
    only `epochs` and the checkpoint cadence are taken from `train_config`, when given.
    A run directory is locked while training writes it: a second trainer gets an AevbError.
    """
    ctx = distributed.current()
    agreed = False

    def ready() -> None:  # every rank got through the setup: only then does training start anywhere
        nonlocal agreed
        agreed = True
        distributed.agree(True, ctx)

    args = (model_config, train_config, data_dir, resume, dataset, on_step, on_epoch, ready, ctx)
    try:
        if run_dir is None:
            if resume:
                raise AevbError("resume needs a run directory")
            return _train(None, *args)
        run_dir = Path(run_dir)
        if not ctx.is_main:  # rank 0 alone checks, locks and writes the run directory
            return _train(run_dir, *args)
        if resume:
            if not run_dir.is_dir():
                raise CheckpointError(f"{run_dir} is not a run directory (no such directory)")
        else:
            _check_new_run_dir(run_dir)
            created = not run_dir.exists()
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise AevbError(f"cannot create run directory {run_dir}: {e.strerror or e}") from None
        with RunLock(run_dir) as lock:
            if not resume:
                _check_new_run_dir(run_dir)  # again, now that no one else can be writing it
            try:
                return _train(run_dir, *args)
            except BaseException:
                if not resume and not (run_dir / ckpt.CONFIG).exists():  # failed before writing anything:
                    lock.path.unlink(missing_ok=True)  # leave no trace of the run (bad data, say)
                    if created:
                        with contextlib.suppress(OSError):
                            run_dir.rmdir()
                raise
    except BaseException:
        if not agreed:  # tell the other ranks, which would otherwise wait for this one
            distributed.agree(False, ctx)
        raise


def _check_new_run_dir(run_dir: Path) -> None:
    if (run_dir / ckpt.CONFIG).exists():
        raise AevbError(f"{run_dir} already holds a run; resume it with --resume or choose another --out")
    if run_dir.exists() and (not run_dir.is_dir() or any(p.name != RunLock.NAME for p in run_dir.iterdir())):
        raise AevbError(f"{run_dir} exists and is not an empty directory; choose another --out")


def _train(
    run_dir: Path | None,
    model_config: ModelConfig | None,
    train_config: TrainConfig | None,
    data_dir: str | Path | None,
    resume: bool,
    dataset: Dataset | None,
    on_step: StepHook | None,
    on_epoch: EpochHook | None,
    ready: Callable[[], None],
    ctx: distributed.Context,
) -> VAE:
    writer = run_dir is not None and ctx.is_main  # under torchrun, the other ranks only read
    if not ctx.is_main:
        on_step = on_epoch = None  # progress and logs come from rank 0
    if resume:
        assert run_dir is not None
        if writer:
            remove_stale_temps(run_dir, [ckpt.CONFIG, ckpt.MODEL, ckpt.CHECKPOINT, ckpt.METRICS])
        model_config, stored = ckpt.read_config(run_dir)
        if stored is None:
            raise CheckpointError(f"{run_dir}/config.json has no training config to resume from")
        changes = {}
        if train_config is not None:
            changes = {f: getattr(train_config, f) for f in ("epochs", "checkpoint_every", "checkpoint_minutes")}
        train_config = dataclasses.replace(stored, **changes)
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()

    if dataset is None:
        dataset = load_dataset(train_config.dataset, data_dir)
    try:
        model_config = dataclasses.replace(model_config, data_shape=tuple(dataset.shape))
    except ValueError as e:  # e.g. --arch conv on a table
        raise AevbError(f"{dataset.name}: {e}") from None
    model_config = resolve_classes(model_config, dataset)  # a conditional VAE's label classes
    if train_config.free_bits > 0 and model_config.prior != "normal":
        raise AevbError("--free-bits needs --prior normal (the KL of a mixture prior does not split per dimension)")
    binarize = resolve_binarize(train_config.binarize, model_config.likelihood, dataset)
    train_config = dataclasses.replace(train_config, binarize=binarize)
    device = resolve_device(train_config.device)
    if device.type == "cuda" and ctx.distributed:
        device = torch.device("cuda", torch.cuda.current_device())  # this rank's GPU (LOCAL_RANK)
    x_train = check_data(split(dataset, "train", binarize), model_config, f"{dataset.name} (train)").to(device)
    x_valid = check_data(split(dataset, "valid", binarize), model_config, f"{dataset.name} (valid)").to(device)
    y_train, y_valid = (  # labels of a conditional model, else None
        None if y is None else y.to(device)
        for y in (
            check_labels(dataset.train_labels, x_train.shape[0], model_config, f"{dataset.name} (train)"),
            check_labels(dataset.valid_labels, x_valid.shape[0], model_config, f"{dataset.name} (valid)"),
        )
    )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_config.seed)
        model = VAE(model_config).to(device)
    if model_config.standardize:  # the training split's mean and std (a resumed run reads them back below)
        model.set_standardization(x_train)
    optimizer = OPTIMIZERS[train_config.optimizer](
        model.parameters(),
        lr=train_config.lr,
        weight_decay=train_config.weight_decay,
        **speed.optimizer_options(OPTIMIZERS[train_config.optimizer], device),  # fused update where supported
    )
    generator = torch.Generator(device=device).manual_seed(train_config.seed)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "examples": 0, "seconds": 0.0, "skipped_steps": 0}
    position: Position | None = None
    records: list[dict[str, Any]] = []
    if run_dir is not None:
        # a run killed before its first checkpoint starts over: same seed, same result
        if resume and (run_dir / ckpt.CHECKPOINT).exists():
            state = {**state, **ckpt.load_checkpoint(run_dir, model, optimizer, generator)}
            saved = state.pop("position", None)
            if saved is not None:
                position = Position.restore(saved, x_train.shape[0], device, str(run_dir / ckpt.CHECKPOINT))
            records = [r for r in read_metrics(run_dir) if r.get("epoch", 0) <= state["epoch"]]
            if writer:
                _write_metrics(run_dir, records)  # epochs logged after the checkpoint are trained again
        if writer:
            ckpt.save_config(run_dir, model_config, train_config)
            ckpt.save_model(run_dir, model)  # the checkpoint's weights, even if the last run died before this
    kl_weight = torch.zeros((), device=device) if train_config.regularised else None  # set by run_epoch
    objective = speed.objective(training_objective(train_config, kl_weight), train_config)  # precision, compile
    module = distributed.wrap(model, objective, train_config, ctx)
    ready()

    last_save = time.monotonic()
    saved_at = None  # where the last good checkpoint stands, for messages
    if run_dir is not None and (run_dir / ckpt.CHECKPOINT).exists():
        saved_at = _where(state, position)
    n = x_train.shape[0]

    def save(pos: Position | None) -> None:
        nonlocal last_save, saved_at
        assert run_dir is not None
        if not writer:
            pass
        elif pos is None:
            ckpt.save_checkpoint(run_dir, model, optimizer, generator, state)
        else:
            saved = {**state, "position": pos.counters()}
            ckpt.save_checkpoint(run_dir, model, optimizer, generator, saved, {"perm": pos.perm, "total": pos.total})
        last_save = time.monotonic()
        saved_at = _where(state, pos)

    def clock_due() -> bool:
        minutes = train_config.checkpoint_minutes
        return bool(minutes) and time.monotonic() - last_save >= 60 * minutes

    for epoch in range(state["epoch"] + 1, train_config.epochs + 1):
        try:
            pos = run_epoch(
                model,
                optimizer,
                x_train,
                train_config,
                generator,
                position,
                epoch=epoch,
                on_step=on_step,
                step0=state["step"],
                clock_due=clock_due if run_dir is not None else None,
                on_checkpoint=save if run_dir is not None else None,
                module=module,
                ctx=ctx,
                kl_weight=kl_weight,
                y=y_train,
            )
        except DivergedError as e:
            step = state["step"] + e.step
            batches = -(-n // train_config.batch_size)
            where = f"at step {step} (epoch {epoch}, batch {e.step} of {batches}): the {e.what} is NaN or inf"
            if run_dir is None:
                kept = ""
            elif saved_at is None:
                kept = f"; {run_dir} has no checkpoint yet (--resume starts it over)"
            else:
                kept = f"; {run_dir} keeps its last good checkpoint ({saved_at})"
            raise DivergedError(
                f"training diverged {where}{kept}. Try a smaller --lr, or --nonfinite skip to drop such steps",
                step,
                e.what,
            ) from None
        position = None
        if pos.counted == 0:
            raise DivergedError(f"every step of epoch {epoch} was non-finite and skipped", state["step"], "loss")
        train_objective = pos.total.item() / pos.counted
        valid = elbo_terms(model, x_valid, seed=train_config.seed, y=y_valid)
        state = {
            "epoch": epoch,
            "step": state["step"] + pos.steps,
            "examples": state["examples"] + n,
            "seconds": state["seconds"] + pos.seconds,
            "skipped_steps": state["skipped_steps"] + pos.skipped,
        }
        record = {
            **state,
            # beta / warm-up / free bits: what was maximised is not the ELBO, and is named so
            ("train_objective" if train_config.regularised else f"train_{train_config.objective}"): train_objective,
            "valid_elbo": valid.elbo.mean().item(),
            "valid_log_px_z": valid.log_px_z.mean().item(),
            "valid_kl": valid.kl.mean().item(),
            "epoch_skipped_steps": pos.skipped,
        }
        if writer:
            # metrics first: a record whose checkpoint never landed is dropped on resume
            records.append(record)
            _write_metrics(run_dir, records)
            save(None)
            ckpt.save_model(run_dir, model)
        if on_epoch is not None:
            on_epoch(record)
    return model.eval()


def _where(state: dict[str, Any], pos: Position | None) -> str:
    if pos is None:
        return f"step {state['step']}, end of epoch {state['epoch']}"
    return f"step {state['step'] + pos.steps}, inside epoch {state['epoch'] + 1}"


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run's metrics.jsonl (a torn last line is ignored)."""
    path = Path(run_dir) / ckpt.METRICS
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(r, dict):
            out.append(r)
    return out


def _write_metrics(run_dir: Path, records: list[dict[str, Any]]) -> None:
    # rewritten whole and atomically: a crash or a full disk never leaves a torn or mixed file
    atomic_write_text(run_dir / ckpt.METRICS, "".join(json.dumps(r) + "\n" for r in records))
