"""`aevb train`: builds the configs from the flags, shows progress, writes the run's figures."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .. import config as C
from .. import distributed, plots
from ..checkpoint import read_config, read_state
from ..data import load_dataset
from ..errors import AevbError
from ..files import inside
from ..preprocess import fit_to_data
from ..recipes import RECIPES, recipe_fields
from ..rundir import check_resumable, progress, read_metrics
from ..train import Step, train
from .common import check_module, custom_model
from .fields import MODEL_FIELDS, TRAIN_FIELDS, given


def cmd_train(args: argparse.Namespace) -> None:
    """Train a new run, or resume one; then write its samples.png and curves.png."""
    if args.recipe == "list":
        print(recipe_list())
        return
    model_kw, train_kw = given(args, MODEL_FIELDS), given(args, TRAIN_FIELDS)
    built, dataset = None, None  # a model with your own networks (--module), and the data that sized them
    if args.resume:
        module = model_kw.pop("module", None)  # not a change: the builder of the run's own networks
        extra = sorted(set(model_kw) | (set(train_kw) - set(C.RESUMABLE_FIELDS)))
        others = [f for f in ("out", "name", "config") if getattr(args, f)]
        if extra or others:
            raise AevbError(
                "--resume continues a run with its stored config; cannot change "
                + ", ".join(extra + [f"--{o}" for o in others])
            )
        run_dir = Path(args.resume)
        check_resumable(run_dir)
        model_cfg, train_cfg = read_config(run_dir)
        try:
            train_cfg = dataclasses.replace(train_cfg or C.TrainConfig(), **train_kw)
        except ValueError as e:
            raise AevbError(str(e)) from None
        if check_module(run_dir, model_cfg, module) is not None:
            built = custom_model(model_cfg, module, train_cfg.seed)  # its weights: the checkpoint's
        if not _resuming(run_dir, train_cfg):
            return
    else:
        name = None
        if args.config:
            file_model, file_train, name = read_config_file(args.config)
            model_kw, train_kw = {**file_model, **model_kw}, {**file_train, **train_kw}
        if train_kw.get("recipe"):  # the recipe's fields first: the config file and the flags override them
            if train_kw["recipe"] not in RECIPES:
                raise AevbError(f"unknown recipe {train_kw['recipe']!r}; the recipes are {', '.join(RECIPES)}")
            recipe_model, recipe_train = recipe_fields(train_kw["recipe"])
            model_kw, train_kw = {**recipe_model, **model_kw}, {**recipe_train, **train_kw}
        if model_kw.get("latents") and model_kw.get("latent_dim", model_kw["latents"][0]) != model_kw["latents"][0]:
            raise AevbError("give --latent-dim (one layer) or --latents (every layer, z_1 first), not both")
        try:
            model_cfg, train_cfg = C.ModelConfig(**model_kw), C.TrainConfig(**train_kw)
        except ValueError as e:
            raise AevbError(str(e)) from None
        if args.out and (args.name or name):
            raise AevbError("give either --out (a path) or a run name (--name / the config file's 'name'), not both")
        if args.out:
            run_dir = Path(args.out)  # a path the user typed: theirs to choose
        else:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            name = args.name or name or f"{Path(train_cfg.dataset).stem}-{stamp}"
            run_dir = inside(args.runs_dir, name)  # a name, maybe from a file: must stay in --runs-dir
        if Path(train_cfg.dataset).suffix:  # a user file: store where it is, not where we stood
            train_cfg = dataclasses.replace(train_cfg, dataset=str(Path(train_cfg.dataset).resolve()))
        if model_cfg.module:  # your own networks are sized by the data: built here, trained as they are
            dataset = load_dataset(train_cfg.dataset, args.data_dir)
            built = custom_model(fit_to_data(model_cfg, dataset), model_cfg.module, train_cfg.seed)

    with distributed.session(train_cfg.device, args.dist_backend, args.dist_timeout) as ctx:
        if ctx.distributed and ctx.is_main:
            print(f"training on {ctx.world_size} processes; global batch {train_cfg.batch_size}", flush=True)
        model = _fit(args, built or model_cfg, train_cfg, run_dir, ctx, dataset)
    if not ctx.is_main:
        return
    if plots.is_image(model.config.data_shape):
        device = next(model.parameters()).device
        g = torch.Generator(device=device).manual_seed(0)
        c = model.config  # a conditional run's grid: one class per column, in turn
        y = torch.arange(10 * c.classes, device=device) % c.classes if c.conditional else None
        n, ncols = (64, None) if y is None else (len(y), c.classes)
        plots.save(plots.image_grid(model.sample(n, g, y=y).cpu(), ncols), run_dir / "samples.png")
    records = read_metrics(run_dir)
    if records:
        plots.save(plots.curves(records), run_dir / "curves.png")
    done = progress(run_dir)
    if done["epoch"] < train_cfg.epochs:  # only a time limit ends a run early without an error
        limit = train_cfg.time_limit
        print(
            f"stopped by --time-limit {limit:g}: {done['minutes']:.3g} minutes of training, at {done['where']} "
            f"of {train_cfg.epochs}; saved in {run_dir}: `aevb train --resume {run_dir} --time-limit "
            f"{2 * limit:g}` (any limit above {limit:g}) continues it"
        )
        return
    print(f"run saved in {run_dir}")


def recipe_list() -> str:
    """What `aevb train --recipe list` prints: each recipe's name, description, source and fields."""
    lines = []
    for name, r in RECIPES.items():
        fields = {**r["model"], **r["train"]}
        shown = " ".join(f"--{k.replace('_', '-')} {_shown(v)}" for k, v in fields.items())
        published = "" if r["published_nll"] is None else f" (published: {r['published_nll']} nats)"
        lines += [f"{name}: {r['description']}{published}", f"    {shown}", f"    source: {r['source']}"]
    return "\n".join(lines)


def _shown(v: Any) -> str:
    return " ".join(map(str, v)) if isinstance(v, tuple) else str(v)


def _resuming(run_dir: Path, train_cfg: C.TrainConfig) -> bool:
    """Say what `--resume` continues (from which checkpoint, at which step); False when there is nothing
    left to train (the run is complete). Asking for fewer epochs than were trained is an AevbError."""
    state, epochs = read_state(run_dir), train_cfg.epochs
    say = _main_process_print
    if state is None:  # stopped before its first checkpoint: same seed, same result
        say(f"resuming {run_dir}: no checkpoint yet, so training starts at step 0 (epoch 1 of {epochs})")
        return True
    done, pos = state["epoch"], state.get("position")
    if pos is None and done > epochs:
        raise AevbError(
            f"{run_dir} has trained {done} epochs, more than --epochs {epochs}; "
            f"give --epochs above {done} to train further"
        )
    if pos is None and done == epochs:
        say(
            f"{run_dir} is already complete: {done} of {epochs} epochs trained (step {state['step']}); nothing to do. "
            f"`aevb train --resume {run_dir} --epochs N` with N > {done} trains it further"
        )
        return False
    where = (
        f"step {state['step']}, the end of epoch {done}"
        if pos is None
        else f"step {state['step'] + pos['steps']}, {pos['done']} examples into epoch {done + 1}"
    )
    say(f"resuming {run_dir} from {run_dir / 'checkpoint.safetensors'} ({where}); training to epoch {epochs}")
    return True


def _main_process_print(text: str) -> None:
    """Print once: by the only process, or by rank 0 of a torchrun launch."""
    ctx = distributed.from_env()
    if ctx is None or ctx.is_main:
        print(text, flush=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM during training (`kill`, a batch scheduler's stop or pre-emption): handled as Ctrl-C is."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """While training, SIGTERM raises `Terminated` instead of ending the process where it stands, so that the
    run stops as on Ctrl-C. Python lets only the main thread set handlers: elsewhere (aevb called from a
    thread) SIGTERM keeps its handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _fit(args, model_cfg, train_cfg, run_dir: Path, ctx: distributed.Context, dataset=None):
    bar = _Progress(args.no_progress or not ctx.is_main, train_cfg.objective)
    try:
        with _sigterm_as_interrupt():
            return train(
                model_cfg,
                train_cfg,
                run_dir,
                data_dir=args.data_dir,
                dataset=dataset,
                resume=bool(args.resume),
                on_step=bar.step,
                on_epoch=bar.epoch,
            )
    except (KeyboardInterrupt, BrokenPipeError) as e:
        bar.close()
        if not (run_dir / "config.json").exists() or not ctx.is_main:
            raise
        # exit status 128 + the signal, as a shell reports a process the signal ended
        why, status = {Terminated: ("terminated", 143), KeyboardInterrupt: ("interrupted", 130)}.get(
            type(e), ("output closed by its reader", 141)
        )
        hint = f"`aevb train --resume {run_dir}` continues it"
        with contextlib.suppress(OSError):  # stderr may have gone with stdout (`2>&1 | head`)
            print(f"aevb: {why}; {run_dir} keeps its last checkpoint: {hint}", file=sys.stderr)
        raise SystemExit(status) from None
    finally:
        bar.close()


def read_config_file(path: str) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """(model fields, training fields, run name) from a JSON config file (`--config`).

    The file has the layout of a run's config.json ({"model": {...}, "train": {...}}, optional
    "version" and "name"); any subset of fields may be given, each with the type of its default.
    """
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AevbError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AevbError(f"--config {path}: not a readable JSON file ({e})") from None
    if not isinstance(d, dict):
        raise AevbError(f"--config {path}: must hold a JSON object with 'model' and/or 'train'")
    unknown = sorted(set(d) - {"version", "model", "train", "name"})
    if unknown:
        raise AevbError(f"--config {path}: unknown keys {unknown}; expected model, train, name, version")
    if d.get("version", C.CONFIG_VERSION) != C.CONFIG_VERSION:
        raise AevbError(f"--config {path}: version {d['version']!r} is not {C.CONFIG_VERSION}")
    name = d.get("name")
    if name is not None and not isinstance(name, str):
        raise AevbError(f"--config {path}: 'name' must be a string")
    out = []
    for section, cls in (("model", C.ModelConfig), ("train", C.TrainConfig)):
        values = d.get(section, {})
        if not isinstance(values, dict):
            raise AevbError(f"--config {path}: '{section}' must be an object of fields")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "data_shape"}
        kw = {}
        for key, v in values.items():
            if key == "data_shape":
                continue  # comes from the data, as in a stored run's config.json
            if key not in fields:
                raise AevbError(f"--config {path}: unknown {section} field {key!r}")
            kw[key] = _typed(v, fields[key].default, f"--config {path}: {section}.{key}")
        out.append(kw)
    return out[0], out[1], name


def _typed(v: Any, default: Any, where: str) -> Any:
    """v, checked to have the type of the field's default (ints are accepted for floats)."""
    if isinstance(default, tuple):
        if isinstance(v, list) and all(isinstance(h, int) and not isinstance(h, bool) for h in v):
            return tuple(v)
        raise AevbError(f"{where} must be a list of whole numbers")
    if isinstance(default, bool) or isinstance(v, bool):
        ok = isinstance(v, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        ok = isinstance(v, (int, float))
        v = float(v) if ok else v
    else:
        ok = isinstance(v, type(default))
    if not ok:
        raise AevbError(f"{where} must be a {type(default).__name__}, got {json.dumps(v)[:40]}")
    return v


class _Progress:
    """A tqdm bar per epoch showing the running bound, and one summary line per epoch."""

    def __init__(self, disabled: bool, objective: str):
        self.disabled, self.objective, self.bar = disabled, objective, None

    def step(self, s: Step) -> None:
        if self.bar is None:
            self.bar = tqdm(
                total=s.total,
                unit="ex",
                desc=f"epoch {s.epoch}/{s.epochs}",
                leave=False,
                disable=self.disabled or None,
                dynamic_ncols=True,
            )
            self.steps, self.sum = 0, torch.zeros((), device=s.batch_sum.device)
        self.steps += 1
        self.sum += s.batch_sum  # stays on the device: no sync per step
        self.bar.update(s.done - self.bar.n)
        if self.steps % 10 == 1 and not self.bar.disable:  # .item() syncs, so only now and then
            self.bar.set_postfix_str(f"running {self.objective} {self.sum.item() / s.done:.2f} nats")

    def epoch(self, r: dict[str, Any]) -> None:
        self.close()
        train_key = next(k for k in r if k.startswith("train_"))
        print(
            f"epoch {r['epoch']:4d}  {train_key.replace('_', ' ')} {r[train_key]:9.3f}  "
            f"valid elbo {r['valid_elbo']:9.3f} (log p(x|z) {r['valid_log_px_z']:9.3f}, "
            f"kl {r['valid_kl']:7.3f})  {r['seconds']:7.1f}s",
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
