"""Training: a minibatch loop that only reduces what the objectives return, and `train()`, which
loads the data, builds or resumes the model and keeps the run directory up to date.

The training set lives on the device as one tensor and is indexed with a fresh permutation each
epoch (no per-item Dataset or collate). All training randomness (permutations, dynamic
binarisation, reparameterisation noise) comes from one torch.Generator that is checkpointed, and
so is the position inside the epoch, so a run resumed from any checkpoint (at an epoch's end or
in the middle of one) ends with exactly the parameters of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

from . import checkpoint as ckpt
from . import distributed, speed
from .config import ModelConfig, TrainConfig
from .data import Dataset, load_dataset
from .errors import AevbError, CheckpointError, DivergedError
from .evaluate import elbo_terms
from .files import RunLock, atomic_write_text, remove_stale_temps
from .model import VAE
from .objectives import elbo, iwae, regularised_elbo
from .preprocess import check_data, resolve_binarize, split

# objective(model, x, config, eps) -> (B,) nats, with eps (S, B, Dz) standard normal noise drawn by the
# trainer for the whole minibatch (so that data-parallel ranks can each keep their shard's part)
OBJECTIVES: dict[str, Callable[[VAE, torch.Tensor, TrainConfig, torch.Tensor], torch.Tensor]] = {
    "elbo": lambda m, x, c, eps: elbo(m, x, c.samples, c.estimator, eps=eps).elbo,
    "iwae": lambda m, x, c, eps: iwae(m, x, c.k, eps=eps),
}


def training_objective(
    config: TrainConfig, kl_weight: torch.Tensor | None = None
) -> Callable[[VAE, torch.Tensor, TrainConfig, torch.Tensor], torch.Tensor]:
    """OBJECTIVES[config.objective]; with beta, KL warm-up or free bits (`config.regularised`), the
    regularised ELBO whose KL weight is the 0-dim tensor `kl_weight`, which the trainer sets before
    each step (`kl_weight_at`): a tensor, so that a compiled objective reads the new value each step."""
    if not config.regularised:
        return OBJECTIVES[config.objective]
    if kl_weight is None:
        raise ValueError("a regularised objective needs its kl_weight tensor")
    return lambda m, x, c, eps: regularised_elbo(m, x, kl_weight, c.free_bits, c.samples, c.estimator, eps=eps)


def kl_weight_at(config: TrainConfig, epoch: int, done: int, n: int) -> float:
    """The KL weight of the step that starts after `done` of n examples of epoch `epoch` (1-based):
    beta * min(1, epochs elapsed / kl_warmup), a linear ramp from 0 (Sonderby et al. 2016); beta without warm-up."""
    if config.kl_warmup <= 0:
        return config.beta
    return config.beta * min(1.0, (epoch - 1 + done / n) / config.kl_warmup)


NOISE_SAMPLES: dict[str, Callable[[TrainConfig], int]] = {"elbo": lambda c: c.samples, "iwae": lambda c: c.k}
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


@dataclasses.dataclass
class Position:
    """Where an epoch stands: its order of examples and what has been summed so far."""

    perm: torch.Tensor  # (N,) int64, this epoch's order of the training examples
    total: torch.Tensor  # () sum of the per-example objective over the steps taken (nats)
    done: int = 0  # examples of the epoch processed (taken or skipped)
    steps: int = 0  # minibatches processed
    counted: int = 0  # examples in `total` (skipped steps are not)
    skipped: int = 0  # steps skipped for a non-finite loss or gradient (--nonfinite skip)
    seconds: float = 0.0  # training time spent in this epoch

    COUNTERS = ("done", "steps", "counted", "skipped", "seconds")  # stored as JSON in a checkpoint

    def counters(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.COUNTERS}

    @classmethod
    def restore(cls, saved: dict[str, Any], n: int, device: torch.device, where: str) -> Position:
        """The position stored in a checkpoint, after checking it fits a training set of n rows."""
        try:
            pos = cls(perm=saved["perm"], total=saved["total"], **{k: saved[k] for k in cls.COUNTERS})
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{where}: the epoch position is incomplete ({e})") from None
        perm_ok = (
            pos.perm.dtype == torch.int64
            and pos.perm.shape == (n,)
            and torch.equal(pos.perm.sort().values, torch.arange(n))
        )
        if not perm_ok:
            raise CheckpointError(f"{where}: the stored epoch order is not a permutation of the {n} training rows")
        if pos.total.shape != () or not pos.total.is_floating_point() or not 0 <= pos.done <= n:
            raise CheckpointError(f"{where}: the stored epoch position does not fit the training data")
        pos.perm, pos.total = pos.perm.to(device), pos.total.to(device)
        return pos


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when available, else CPU; asking for CUDA without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AevbError("--device cuda was asked for, but CUDA is not available on this machine")
    return torch.device(name)


def _nonfinite(loss: torch.Tensor, params: list[torch.Tensor]) -> str | None:
    """ "loss" or "gradient" when that is NaN/inf, else None (one host sync per step).
    `params`: the model's parameters, listed once per epoch (module.parameters() walks the modules)."""
    if not torch.isfinite(loss):
        return "loss"
    grads = [p.grad for p in params if p.grad is not None]
    if grads and not torch.isfinite(torch.stack(torch._foreach_norm(grads)).sum()):
        return "gradient"
    return None


def run_epoch(
    model: VAE,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    position: Position | None = None,
    *,
    epoch: int = 1,
    on_step: StepHook | None = None,
    step0: int = 0,
    clock_due: Callable[[], bool] | None = None,
    on_checkpoint: Callable[[Position], None] | None = None,
    module: torch.nn.Module | None = None,
    ctx: distributed.Context | None = None,
    kl_weight: torch.Tensor | None = None,
) -> Position:
    """Minibatch steps of config.batch_size from `position` (a new epoch when None) to the epoch's end.

    A step whose loss or gradient is NaN/inf raises DivergedError before the parameters move, or,
    with config.nonfinite == "skip", is dropped and counted in `skipped`. Between steps,
    `on_checkpoint(position)` runs every config.checkpoint_every steps of the run (counted from
    `step0`) and when `clock_due()` says so. Under torch.distributed (`ctx`, and `module` the
    DDP-wrapped objective), each rank computes its shard of every minibatch. `kl_weight`: the 0-dim
    tensor a given `module` reads its KL weight from (beta, warm-up), set here before every step.
    """
    model.train()
    ctx = ctx or distributed.Context()
    if config.regularised and kl_weight is None:
        if module is not None:
            raise ValueError("a module with a regularised objective needs its kl_weight tensor")
        kl_weight = torch.zeros((), device=x.device)
    # speed.objective: config.precision (bf16 autocast) and config.compile (torch.compile) applied
    module = module or distributed.wrap(
        model, speed.objective(training_objective(config, kl_weight), config), config, ctx
    )
    noise = NOISE_SAMPLES[config.objective](config)
    n, dz = x.shape[0], model.config.latent_dim
    if position is None:
        perm = torch.randperm(n, generator=generator, device=x.device)
        position = Position(perm=perm, total=torch.zeros((), device=x.device))
    params = list(model.parameters())
    start = time.perf_counter() - position.seconds
    for i in range(position.done, n, config.batch_size):
        xb = x.index_select(0, position.perm[i : i + config.batch_size])  # a row gather, not advanced indexing
        if config.binarize == "dynamic":
            xb = speed.bernoulli(xb, generator)
        eps = torch.randn((noise, xb.shape[0], dz), generator=generator, device=x.device)  # the whole minibatch's
        if kl_weight is not None:
            kl_weight.fill_(kl_weight_at(config, epoch, i, n))
        mine = distributed.shard(xb.shape[0], ctx)
        per_example = module(xb[mine], eps[:, mine])  # (B / world,)
        if ctx.distributed:  # DDP averages over ranks: this makes it the mean over the global batch
            loss = -per_example.sum() * (ctx.world_size / xb.shape[0])
        else:
            loss = -per_example.mean()  # the negative bound, per example
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        bad = _nonfinite(loss, params)
        batch_sum = per_example.detach().sum()
        due = clock_due is not None and clock_due()
        if ctx.distributed:  # one small all-reduce: every rank takes the same decisions
            stats = distributed.all_sum(
                torch.stack([batch_sum.double(), torch.tensor(float(bad is not None)), torch.tensor(float(due))])
            )
            batch_sum, due = stats[0].to(batch_sum.dtype), bool(stats[2] > 0)
            if bad is None and stats[1] > 0:
                bad = "loss or gradient (on another rank)"
        step = position.steps + 1
        if bad is not None:
            params_bad = not all(torch.isfinite(p).all() for p in model.parameters())
            if config.nonfinite == "stop" or params_bad:  # NaN parameters: skipping cannot help
                what = "parameters" if params_bad else bad
                raise DivergedError(
                    f"training diverged at step {step} of epoch {epoch}: the {what} is NaN or inf", step, what
                )
            optimizer.zero_grad(set_to_none=True)
            position.skipped += 1
        else:
            optimizer.step()
            position.total += batch_sum
            position.counted += xb.shape[0]
        position.done, position.steps = min(i + config.batch_size, n), step
        position.seconds = time.perf_counter() - start
        if on_step is not None and bad is None:
            on_step(Step(epoch, config.epochs, position.done, n, batch_sum))
        every = config.checkpoint_every
        if on_checkpoint is not None and position.done < n and (due or (every and (step0 + step) % every == 0)):
            on_checkpoint(position)  # the epoch's end has its own checkpoint
    return position


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
    if train_config.free_bits > 0 and model_config.prior != "normal":
        raise AevbError("--free-bits needs --prior normal (the KL of a mixture prior does not split per dimension)")
    binarize = resolve_binarize(train_config.binarize, model_config.likelihood, dataset)
    train_config = dataclasses.replace(train_config, binarize=binarize)
    device = resolve_device(train_config.device)
    if device.type == "cuda" and ctx.distributed:
        device = torch.device("cuda", torch.cuda.current_device())  # this rank's GPU (LOCAL_RANK)
    x_train = check_data(split(dataset, "train", binarize), model_config, f"{dataset.name} (train)").to(device)
    x_valid = check_data(split(dataset, "valid", binarize), model_config, f"{dataset.name} (valid)").to(device)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_config.seed)
        model = VAE(model_config).to(device)
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
        valid = elbo_terms(model, x_valid, seed=train_config.seed)
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
