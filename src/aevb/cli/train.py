"""`aevb train`: builds the configs from the flags, shows progress, writes the run's figures."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .. import config as C
from .. import plots
from ..checkpoint import read_config
from ..errors import AevbError
from ..train import Step, read_metrics, train
from .parser import MODEL_FIELDS, TRAIN_FIELDS, given


def cmd_train(args: argparse.Namespace) -> None:
    """Train a new run, or resume one; then write its samples.png and curves.png."""
    model_kw, train_kw = given(args, MODEL_FIELDS), given(args, TRAIN_FIELDS)
    if args.resume:
        extra = sorted(set(model_kw) | (set(train_kw) - {"epochs"}))
        if extra or args.out:
            raise AevbError(
                f"--resume continues a run with its stored config; cannot change {', '.join(extra) or 'out'}"
            )
        run_dir = Path(args.resume)
        model_cfg, train_cfg = read_config(run_dir)
        train_cfg = dataclasses.replace(train_cfg or C.TrainConfig(), **train_kw)
    else:
        try:
            model_cfg, train_cfg = C.ModelConfig(**model_kw), C.TrainConfig(**train_kw)
        except ValueError as e:
            raise AevbError(str(e)) from None
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(args.out) if args.out else Path("runs") / f"{Path(train_cfg.dataset).stem}-{stamp}"
        if Path(train_cfg.dataset).suffix:  # a user file: store where it is, not where we stood
            train_cfg = dataclasses.replace(train_cfg, dataset=str(Path(train_cfg.dataset).resolve()))

    bar = _Progress(args.no_progress, train_cfg.objective)
    try:
        model = train(
            model_cfg,
            train_cfg,
            run_dir,
            data_dir=args.data_dir,
            resume=bool(args.resume),
            on_step=bar.step,
            on_epoch=bar.epoch,
        )
    except KeyboardInterrupt:
        bar.close()
        if not (run_dir / "config.json").exists():
            raise
        hint = f"`aevb train --resume {run_dir}` continues it"
        print(f"aevb: interrupted; {run_dir} keeps its last finished epoch: {hint}", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        bar.close()

    if len(model.config.data_shape) == 2:  # images
        g = torch.Generator(device=next(model.parameters()).device).manual_seed(0)
        plots.save(plots.image_grid(model.sample(64, g).cpu()), run_dir / "samples.png")
    records = read_metrics(run_dir)
    if records:
        plots.save(plots.curves(records), run_dir / "curves.png")
    print(f"run saved in {run_dir}")


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
