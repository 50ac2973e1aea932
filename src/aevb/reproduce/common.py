"""What every reproduced figure shares: the paper's settings, the data, the learners, the curve loop.

AEVB, wake-sleep and MCEM get the same `aevb.VAE` networks, the same data and the same evaluation
(`aevb.evaluate.elbo_terms` / `log_likelihood`); they differ only in the learning rule (`LEARNERS`).
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ..config import ModelConfig
from ..data import load_dataset
from ..errors import AevbError
from ..evaluate import elbo_terms, log_likelihood
from ..files import atomic_write_text
from ..model import VAE
from ..objectives import elbo
from ..preprocess import binarize_once, check_data, resolve_binarize, split
from .mcem import MCEM
from .wake_sleep import wake_sleep_loss

LRS = (0.01, 0.02, 0.1)  # Adagrad step sizes the paper chose from on the first iterations
BATCH = 100  # M
COLORS = {"aevb": "tab:red", "wake-sleep": "tab:green", "mcem": "tab:blue"}
LABELS = {"aevb": "AEVB", "wake-sleep": "wake-sleep", "mcem": "MCEM"}


@dataclass(frozen=True)
class Setup:
    """A dataset's model as in the paper: one tanh hidden layer, init N(0, 0.01^2) (std 0.01)."""

    dataset: str
    hidden: int
    likelihood: str
    latents: tuple[int, ...]

    def model_config(self, data_shape: tuple[int, ...], latent_dim: int, hidden: int | None = None) -> ModelConfig:
        return ModelConfig(
            data_shape=data_shape,
            latent_dim=latent_dim,
            hidden=(hidden or self.hidden,),
            activation="tanh",
            likelihood=self.likelihood,
            init="normal",
            init_std=0.01,
        )


SETUPS = {
    "mnist": Setup("mnist", 500, "bernoulli", (3, 5, 10, 20, 200)),
    "frey-face": Setup("frey-face", 200, "gaussian-learned-sigmoid", (2, 5, 10, 20)),
}


class Data(NamedTuple):
    """Training data as the learners see it, and fixed evaluation subsets."""

    name: str
    shape: tuple[int, ...]
    train: torch.Tensor  # (N, *shape); grey levels when binarize == "dynamic"
    binarize: str
    eval_train: torch.Tensor  # fixed subset of train, binarised once (seed 0) when the run binarises
    eval_test: torch.Tensor  # fixed subset of test, binarised once (seed 2)


def load_data(setup: Setup, data_dir: str | None, n_train: int | None = None, n_eval: int = 1000) -> Data:
    """The dataset's train split (first n_train rows) and evaluation subsets of n_eval rows each."""
    ds = load_dataset(setup.dataset, data_dir)
    cfg = setup.model_config(tuple(ds.shape), 2)
    binarize = resolve_binarize("auto", setup.likelihood, ds)
    train = check_data(split(ds, "train", binarize), cfg, f"{ds.name} (train)")
    test = check_data(split(ds, "test", binarize), cfg, f"{ds.name} (test)")
    if n_train is not None:
        if n_train > train.shape[0]:
            raise AevbError(f"{ds.name} has {train.shape[0]} training points; {n_train} were asked for")
        train = train[:n_train]
    eval_train = train[:n_eval]
    if binarize == "dynamic":
        eval_train = binarize_once(eval_train, 0)
    return Data(ds.name, tuple(ds.shape), train, binarize, eval_train, test[:n_eval])


def aevb_loss(model: VAE, x: torch.Tensor, generator: torch.Generator | None = None):
    """(loss, report): minus the SGVB estimate of the ELBO (estimator B, L = 1) averaged over the
    minibatch, and that average, nats per example."""
    bound = elbo(model, x, samples=1, estimator="analytic", generator=generator).elbo
    return -bound.mean(), bound.detach().mean()


class Learner:
    """Adagrad on all parameters, one step per minibatch of `rule(model, x, generator) -> (loss, report)`.

    AEVB and wake-sleep are both this learner: they differ only in the rule (`aevb_loss`,
    `wake_sleep.wake_sleep_loss`). weight_decay is the gradient scale of an N(0, I) prior on the
    parameters per example (1/N for N training points).
    """

    def __init__(
        self,
        model: VAE,
        rule: Callable[..., tuple[torch.Tensor, torch.Tensor]],
        lr: float,
        weight_decay: float = 0.0,
        generator: torch.Generator | None = None,
    ):
        self.model, self.rule, self.generator = model, rule, generator
        self.optimizer = torch.optim.Adagrad(model.parameters(), lr=lr, weight_decay=weight_decay)

    def step(self, x: torch.Tensor, index: torch.Tensor | None = None) -> float:
        """One update on minibatch x; returns the rule's report (nats per example)."""
        self.model.train()
        loss, report = self.rule(self.model, x, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return report.item()


# name -> (model, lr, n_train, generator) -> a learner with step(x, index). The weight decay 1/N is
# the per-example gradient of an N(0, I) prior on the parameters (the paper's log p(theta) * M/N per minibatch).
LEARNERS: dict[str, Callable[[VAE, float, int, torch.Generator], Any]] = {
    "aevb": lambda m, lr, n, g: Learner(m, aevb_loss, lr, 1.0 / n, g),
    "wake-sleep": lambda m, lr, n, g: Learner(m, wake_sleep_loss, lr, 1.0 / n, g),
    "mcem": lambda m, lr, n, g: MCEM(m, lr, n, 1.0 / n, g),
}

Evaluate = Callable[[VAE, torch.Tensor], float]  # mean over rows, nats per example


def mean_elbo(model: VAE, x: torch.Tensor) -> float:
    """The ELBO (estimator B, L = 1, seed 0) averaged over x, nats per example: the same for every learner."""
    return elbo_terms(model, x, seed=0).elbo.mean().item()


def mean_log_likelihood(k: int) -> Evaluate:
    """Importance-sampled log p(x) with k samples from the encoder (seed 0), averaged over x."""
    return lambda model, x: log_likelihood(model, x, k=k, batch_size=100, seed=0).mean().item()


def schedule(budget: int, points: int, first: int) -> list[int]:
    """Evaluation points: `points` numbers of training samples, log-spaced from `first` to `budget`."""
    first = max(1, min(first, budget))
    grid = np.geomspace(first, budget, max(points, 1)) if budget > first else np.array([budget])
    return sorted({int(math.ceil(v)) for v in grid})


@dataclass
class Curve:
    """One learner's run: the chosen step size and one record per evaluation point."""

    method: str
    lr: float
    records: list[dict[str, Any]] = field(default_factory=list)
    model: VAE | None = None


def fit_curve(
    method: str,
    config: ModelConfig,
    data: Data,
    budget: int,
    points: int,
    evaluate: Evaluate,
    metric: str,
    seed: int = 0,
    lrs: Sequence[float] = LRS,
    select: int = 10_000,
    progress: Callable[[int], None] | None = None,
) -> Curve:
    """Train `method` for `budget` training samples; evaluate train and test at log-spaced points.

    The Adagrad step size is chosen from `lrs` as in the paper: every candidate trains `select`
    samples from the same initialisation and seed, the best `evaluate` on the training subset wins,
    and that run continues (its first samples count). Records: examples, seconds, train_<metric>,
    test_<metric>, nats per example.
    """
    n = data.train.shape[0]
    select = min(select, budget)
    trials = []
    for lr in lrs:
        with torch.random.fork_rng(devices=[]):  # the same initialisation for every candidate
            torch.manual_seed(seed)
            model = VAE(config)
        g = torch.Generator().manual_seed(seed)
        learner = LEARNERS[method](model, lr, n, g)
        t0 = time.perf_counter()
        state = _train(learner, data, select, 0, g, progress)
        score = evaluate(model, data.eval_train)
        score = score if math.isfinite(score) else -math.inf
        trials.append((score, lr, model, learner, g, state, time.perf_counter() - t0))
    score, lr, model, learner, g, state, seconds = max(trials, key=lambda t: t[0])
    curve = Curve(method, lr, model=model)
    for target in schedule(budget, points, select):
        t0 = time.perf_counter()
        state = _train(learner, data, target - state.examples, state.examples, g, progress, state)
        seconds += time.perf_counter() - t0
        curve.records.append(
            {
                "examples": state.examples,
                "seconds": round(seconds, 3),
                f"train_{metric}": evaluate(model, data.eval_train),
                f"test_{metric}": evaluate(model, data.eval_test),
            }
        )
        if not all(math.isfinite(v) for v in curve.records[-1].values()):
            raise AevbError(f"{method} diverged at {state.examples} training samples (lr {lr})")
    return curve


class _State(NamedTuple):
    examples: int
    perm: torch.Tensor
    pos: int


def _train(learner, data: Data, count: int, examples: int, g: torch.Generator, progress, state=None) -> _State:
    """At least `count` more training samples in minibatches of M, epoch after epoch; returns where it stopped."""
    n = data.train.shape[0]
    perm, pos = (state.perm, state.pos) if state is not None else (torch.randperm(n, generator=g), 0)
    done = 0
    while done < count:
        if pos >= n:
            perm, pos = torch.randperm(n, generator=g), 0
        index = perm[pos : pos + BATCH]
        pos += index.shape[0]
        xb = data.train[index]
        if data.binarize == "dynamic":
            xb = torch.bernoulli(xb, generator=g)
        learner.step(xb, index)
        done += index.shape[0]
        if progress is not None:
            progress(index.shape[0])
    return _State(examples + done, perm, pos)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """rows (dicts with the same keys) as a CSV with a header, written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return atomic_write_text(path, buf.getvalue())


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def out_dir(out: str) -> Path:
    """The output folder, created if missing; an existing file there is an error."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise AevbError(f"--out {p} exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AevbError(f"cannot create {p}: {e.strerror or e}") from None
    return p


def plots():
    """matplotlib.pyplot with the Agg backend (imported only when a figure is drawn)."""
    from ..plots import pyplot

    return pyplot()


def draw_curves(ax, rows: list[dict], methods: Sequence[str], metric: str, show_lr: bool, legend_size: int) -> None:
    """One panel of Figures 2 and 3: `metric` (train dashed, test solid) per method against the
    training samples evaluated, on a log axis. show_lr: name each method's chosen step size."""
    for method in methods:
        rs = [r for r in rows if r["method"] == method]
        if not rs:
            continue
        x = [float(r["examples"]) for r in rs]
        for part, style in (("train", "--"), ("test", "-")):
            label = f"{LABELS[method]} {part}"
            if show_lr and part == "test":
                label += f" (lr {float(rs[0]['lr']):g})"
            ax.plot(x, [float(r[f"{part}_{metric}"]) for r in rs], style, color=COLORS[method], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("training samples evaluated")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar over training samples (disabled with --no-progress)."""
    from tqdm import tqdm

    return tqdm(total=total, unit="ex", unit_scale=True, desc=desc, leave=False, disable=not enabled or None)
