"""The run directory around the training loop: `opened` checks and locks it, `RunDir` writes its
config, resumes it, checkpoints (at an epoch's end or inside one, with the epoch's position) and
logs the per-epoch metrics (and, when asked, the same as TensorBoard scalars: `aevb.board`); `read_metrics` reads
them back. The files are those of `aevb.checkpoint`.

Under torchrun only rank 0 (the writer) checks, locks and writes; every rank reads a resumed run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from . import checkpoint as ckpt
from .board import Board
from .config import RESUMABLE_FIELDS, ModelConfig, TrainConfig
from .errors import AevbError, CheckpointError
from .files import RunLock, atomic_write_text, remove_stale_temps
from .loop import Fitting, Position
from .model import VAE

# The trainer's counters before its first epoch; a checkpoint stores them (as JSON) at the epoch it holds.
START_STATE: dict[str, Any] = {"epoch": 0, "step": 0, "examples": 0, "seconds": 0.0, "skipped_steps": 0}


class RunDir:
    """One run's files as a trainer keeps them; only the `writer` writes, every rank reads."""

    def __init__(self, path: Path, writer: bool = True):
        self.path, self.writer = path, writer
        self.records: list[dict[str, Any]] = []  # the metrics of the epochs trained so far
        self.saved_at: str | None = None  # where the last good checkpoint stands, for messages
        self.board: Board | None = None  # TensorBoard scalars of the records (train_config.tensorboard)

    def resumed_configs(self, train_config: TrainConfig | None) -> tuple[ModelConfig, TrainConfig]:
        """The stored configs, with `train_config`'s RESUMABLE_FIELDS (epochs, time limit, checkpointing) if given."""
        if self.writer:
            remove_stale_temps(self.path, [ckpt.CONFIG, ckpt.MODEL, ckpt.CHECKPOINT, ckpt.METRICS])
        model_config, stored = ckpt.read_config(self.path)
        if stored is None:
            raise CheckpointError(f"{self.path}/config.json has no training config to resume from")
        changes = {} if train_config is None else {f: getattr(train_config, f) for f in RESUMABLE_FIELDS}
        return model_config, dataclasses.replace(stored, **changes)

    def restore(
        self,
        model: VAE,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        n: int,
        device: torch.device,
    ) -> tuple[dict[str, Any], Position | None]:
        """Weights, optimiser and generator from the last checkpoint; returns the trainer's counters and,
        for a checkpoint inside an epoch, its position (checked against the n training rows), else None.
        Without a checkpoint (a run killed before its first) START_STATE: same seed, same result."""
        path = self.path / ckpt.CHECKPOINT
        if not path.exists():
            return dict(START_STATE), None
        state = {**START_STATE, **ckpt.load_checkpoint(self.path, model, optimizer, generator)}
        saved = state.pop("position", None)
        position = None if saved is None else Position.restore(saved, n, device, str(path))
        self.records = [r for r in read_metrics(self.path) if r.get("epoch", 0) <= state["epoch"]]
        if self.writer:
            write_metrics(self.path, self.records)  # epochs logged after the checkpoint are trained again
        self.saved_at = _where(state, None if position is None else position.steps)
        return state, position

    def begin(self, model_config: ModelConfig, train_config: TrainConfig) -> None:
        """A new run's configs as asked, written before its data is read: a run stopped during its setup
        is then resumed (its setup redone from them) rather than left as a folder no command accepts."""
        if self.writer:
            ckpt.save_config(self.path, model_config, train_config)

    def start(self, model_config: ModelConfig, train_config: TrainConfig, model: VAE) -> None:
        """Write the configs and the weights (a resumed run's: its checkpoint's, even if the last run died before)."""
        if self.writer and train_config.tensorboard and self.board is None:  # no package: fail before the weights
            self.board = Board(self.path, first_epoch=len(self.records) + 1)  # a resume purges epochs trained again
        if self.writer:
            ckpt.save_config(self.path, model_config, train_config)
            ckpt.save_model(self.path, model)

    def save(self, fit: Fitting, state: dict[str, Any], position: Position | None = None) -> None:
        """Checkpoint the fitting with the trainer's counters `state` and, inside an epoch, its `position`."""
        if self.writer and position is None:
            ckpt.save_checkpoint(self.path, fit.model, fit.optimizer, fit.generator, state)
        elif self.writer:
            saved = {**state, "position": position.counters()}
            tensors = {"perm": position.perm, "total": position.total}
            ckpt.save_checkpoint(self.path, fit.model, fit.optimizer, fit.generator, saved, tensors)
        self.saved_at = _where(state, None if position is None else position.steps)

    def pause(self, fit: Fitting, state: dict[str, Any], position: Position) -> None:
        """Checkpoint inside an epoch where the run stops (its time limit), and write the weights `load`
        reads there too: the run's model is the one it stopped with, until it resumes."""
        self.save(fit, state, position)
        if self.writer:
            ckpt.save_model(self.path, fit.model)

    def end_epoch(self, fit: Fitting, state: dict[str, Any], record: dict[str, Any]) -> None:
        """Log the epoch's metrics `record`, checkpoint, and write the weights `load` reads."""
        if self.writer:  # metrics first: a record whose checkpoint never landed is dropped on resume
            self.records.append(record)
            write_metrics(self.path, self.records)
            if self.board is not None:
                self.board.epoch(record)
        self.save(fit, state)
        if self.writer:
            ckpt.save_model(self.path, fit.model)


def progress(run_dir: str | Path) -> dict[str, Any]:
    """How far a run's training got, from its last checkpoint: `epoch` (epochs finished), `epochs` (with
    the fraction of an unfinished one), `step` (optimiser steps, skipped ones included), `seconds` and
    `minutes` (training time over all its resumes: the steps only), `inside_epoch` (whether it stopped
    inside one) and `where` (in words). A run without a checkpoint has done nothing yet."""
    state = {**START_STATE, **(ckpt.read_state(run_dir) or {})}
    pos = state.get("position") or {}
    done, rows = pos.get("done", 0), state.get("rows", 0)
    seconds = state["seconds"] + pos.get("seconds", 0.0)
    return {
        "epoch": state["epoch"],
        "epochs": state["epoch"] + (done / rows if rows else 0.0),
        "step": state["step"] + pos.get("steps", 0),
        "seconds": seconds,
        "minutes": seconds / 60,
        "inside_epoch": bool(pos),
        "where": _where(state, pos["steps"] if pos else None),
    }


def _where(state: dict[str, Any], steps_inside: int | None) -> str:
    """Where a checkpoint stands, in words: at an epoch's end, or `steps_inside` steps into the next epoch."""
    if steps_inside is None:
        return f"step {state['step']}, end of epoch {state['epoch']}"
    return f"step {state['step'] + steps_inside}, inside epoch {state['epoch'] + 1}"


@contextlib.contextmanager
def opened(run_dir: str | Path | None, resume: bool, writer: bool = True) -> Iterator[RunDir | None]:
    """The run directory for the duration of the block (None without `run_dir`).

    The writer checks it (a resumed run's must exist; a new run's must be absent or empty, and is
    created) and holds its lock throughout: a second trainer gets an AevbError. A new run that fails
    before writing its first weights (bad data, say) leaves no trace.
    """
    if run_dir is None:
        yield None
        return
    run = RunDir(Path(run_dir), writer)
    if not writer:
        yield run
        return
    created = _make(run.path, resume)
    with RunLock(run.path) as lock:
        if not resume:
            _check_new(run.path)  # again, now that no one else can be writing it
        try:
            yield run
        except BaseException:
            if not resume and not (run.path / ckpt.MODEL).exists():  # failed during its setup:
                (run.path / ckpt.CONFIG).unlink(missing_ok=True)  # leave no trace of the run (bad data, say)
                lock.path.unlink(missing_ok=True)
                if created:
                    with contextlib.suppress(OSError):
                        run.path.rmdir()
            raise
        finally:
            if run.board is not None:
                run.board.close()


def _make(run_dir: Path, resume: bool) -> bool:
    """Check run_dir for a resumed or a new run, creating a new run's; returns whether it was created."""
    if resume:
        check_resumable(run_dir)
        return False
    _check_new(run_dir)
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AevbError(f"cannot create run directory {run_dir}: {e.strerror or e}") from None
    return created


def check_resumable(run_dir: Path) -> None:
    """CheckpointError unless run_dir holds a run's config.json; for a folder that a run stopped before
    writing it left behind (nothing but its lock), the error says that the first command accepts it."""
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a run directory (no such directory)")
    if (run_dir / ckpt.CONFIG).exists():
        return
    if all(p.name == RunLock.NAME or p.name.startswith(f".{ckpt.CONFIG}.") for p in run_dir.iterdir()):
        raise CheckpointError(
            f"{run_dir} holds no run yet: training was stopped before it wrote config.json; nothing was trained, "
            f"so start it afresh with the command that created it (`aevb train [flags] --out {run_dir}` "
            "accepts this folder as it is)"
        )
    raise CheckpointError(f"{run_dir} is not a run directory (no {ckpt.CONFIG})")


def _check_new(run_dir: Path) -> None:
    if (run_dir / ckpt.CONFIG).exists():
        raise AevbError(f"{run_dir} already holds a run; resume it with --resume or choose another --out")
    if run_dir.exists() and (not run_dir.is_dir() or any(p.name != RunLock.NAME for p in run_dir.iterdir())):
        raise AevbError(f"{run_dir} exists and is not an empty directory; choose another --out")


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


def write_metrics(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """Replace metrics.jsonl with `records`, one JSON line each."""
    # rewritten whole and atomically: a crash or a full disk never leaves a torn or mixed file
    atomic_write_text(run_dir / ckpt.METRICS, "".join(json.dumps(r) + "\n" for r in records))
