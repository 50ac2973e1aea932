"""The time-to-likelihood benchmark's page: docs/benchmarks/likelihood.md and likelihood.png, written from the
records (likelihood_NAME.json) that `benchmarks/likelihood.py run` appends, next to the published numbers.

Every published number below carries its source. Numbers are test log p(x) in nats per image (higher is
better; the papers print the negative, NLL), importance-sampled with k = 5000 unless said otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

from aevb import plots
from aevb.files import atomic_write_text

IWAE_PAPER = "Burda, Grosse & Salakhutdinov 2016, *Importance Weighted Autoencoders*, ICLR, Table 1 (arXiv:1509.00519)"
IWAE_BINARISATION = (
    "MNIST binarised anew for every minibatch (dynamic), per H. Larochelle's review of the paper, "
    "http://www.shortscience.org/paper?bibtexKey=journals%2Fcorr%2FBurdaGS15"
)
PYTHAE = "pythae (Chadebec et al. 2022) reproductions, model cards on the Hugging Face hub"
# (label, log p(x) nats, training, data, source)
PUBLISHED = [
    ("VAE, 1 stochastic layer (50-D)", -86.76, "3,280 passes, k = 1", "MNIST, dynamic", IWAE_PAPER),
    ("IWAE k = 50, 1 stochastic layer", -84.78, "3,280 passes", "MNIST, dynamic", IWAE_PAPER),
    ("VAE, 2 stochastic layers (100-50)", -85.33, "3,280 passes, k = 1", "MNIST, dynamic", IWAE_PAPER),
    ("IWAE k = 50, 2 stochastic layers", -82.90, "3,280 passes", "MNIST, dynamic", IWAE_PAPER),
    (
        "pythae VampPrior (K = 500)",
        -85.79,
        "pythae's reproduction of Tomczak & Welling 2018",
        "MNIST, static binarisation",
        PYTHAE + ": https://huggingface.co/clementchadebec/reproduced_vamp",
    ),
    (
        "pythae IWAE k = 50",
        -86.82,
        "pythae's reproduction of Burda et al. 2016",
        "MNIST, static binarisation",
        PYTHAE + ": https://huggingface.co/clementchadebec/reproduced_iwae",
    ),
]
# aevb's earlier best numbers (784-400-20 ReLU, one stochastic layer), before this benchmark
PREVIOUS = [
    (
        "aevb 784-400-20, 50 epochs",
        -92.85,
        0.24,
        "aevb train --dataset mnist --hidden 400 --latent-dim 20 --activation relu --epochs 50",
        "docs/results.md (docs/results.sh), ≈ 2 s/epoch",
    ),
    (
        "aevb 784-400-20, 450 epochs (18.5 min of training)",
        -90.17,
        0.23,
        "aevb train --dataset mnist --hidden 400 --latent-dim 20 --activation relu --precision bf16 --epochs 450",
        "issue 18 (both cores of the project's CPU machine)",
    ),
]
# the goals of issue 18 on the project's 2-core CPU: (training minutes, log p(x) to reach)
TARGETS = [(15.0, -88.0), (60.0, -86.0), (120.0, -84.0)]
REFERENCE = PUBLISHED[0]  # the one-layer VAE: the same model class as aevb's default


def read_all(docs: Path) -> list[dict]:
    """Every run's records, by name."""
    return [json.loads(p.read_text()) for p in sorted(docs.glob("likelihood_*.json"))]


def _nats(r: dict) -> str:
    return f"{r['log_likelihood']:.2f} ± {r['log_likelihood_se']:.2f}"


def _minutes(m: float) -> str:
    return f"{m:.1f}" if m >= 1 else f"{m:.3f}"


def progress_table(d: dict) -> str:
    """One run's measurements as text: minutes, epochs, log p(x), and the gap to the one-layer VAE of Burda et al."""
    label, ref = REFERENCE[0], REFERENCE[1]
    lines = [f"{d['name']}: test log p(x) (nats, k importance samples) against training minutes"]
    for r in d["records"]:
        gap = ref - r["log_likelihood"]
        than = f"{gap:.2f} nats short of" if gap > 0 else f"{-gap:.2f} nats above"
        lines.append(
            f"  {r['minutes']:8.3f} min  {r['epochs']:8.2f} epochs  {_nats(r):>16s}  k={r['k']}  "
            f"{r['examples']} images  ({than} Burda et al.'s {label}, {ref})"
        )
    lines.append("  published: " + "; ".join(f"{p[0]} {p[1]}" for p in PUBLISHED))
    return "\n".join(lines)


def _gradient(train_args: list[str]) -> tuple[str, tuple[str, ...]]:
    """(the encoder's gradient estimator, the other train args): `--gradient G` taken out (standard without)."""
    args, gradient = list(train_args), "standard"
    if "--gradient" in args:
        i = args.index("--gradient")
        gradient = args[i + 1]
        del args[i : i + 2]
    return gradient, tuple(args)


def gradient_table(runs: list[dict]) -> list[str]:
    """Markdown: each run with `--gradient dreg` or `stl` beside the run with the standard gradient and otherwise
    the same train args (same recipe, flags and seed), at their last measurements, and the difference; [] when
    no run has such a partner."""
    standard: dict[tuple[str, ...], list[dict]] = {}
    others: list[tuple[str, tuple[str, ...], dict]] = []
    for d in runs:
        if d["records"] and not d.get("lost"):
            gradient, rest = _gradient(d["train_args"])
            if gradient == "standard":
                standard.setdefault(rest, []).append(d)
            else:
                others.append((gradient, rest, d))
    pairs = [(g, rest, s, d) for g, rest, d in others for s in standard.get(rest, [])]
    if not pairs:
        return []
    lines = [
        "## Gradient estimators: the same run with another `--gradient`",
        "",
        "Each row: a run with the DReG or STL encoder gradient and the run whose train args differ only in "
        "`--gradient` (same seed), each at its last measurement (test log p(x), nats; passes; training minutes). "
        "Δ: its log p(x) minus the standard gradient's (positive: better).",
        "",
        "| train args | standard | gradient | with it | Δ |",
        "|---|---|---|---|---:|",
    ]
    deltas: dict[str, list[float]] = {}
    for g, rest, s, d in pairs:
        a, b = s["records"][-1], d["records"][-1]
        deltas.setdefault(g, []).append(b["log_likelihood"] - a["log_likelihood"])
        cells = [f"{_nats(r)} ({r['epochs']:.0f} passes, {r['minutes']:.1f} min)" for r in (a, b)]
        lines.append(f"| `{' '.join(rest)}` | {cells[0]} | {g} | {cells[1]} | {deltas[g][-1]:+.2f} |")
    lines.append("")
    for g, ds in deltas.items():
        better = sum(x > 0 for x in ds)
        lines.append(f"{g}: mean Δ {sum(ds) / len(ds):+.2f} nats over {len(ds)} pair(s), better in {better}.")
    return lines + [""]


def figure(runs: list[dict]):
    """Test log p(x) against training minutes, one line per run, the published numbers as horizontal lines."""
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(11, 4.8))
    for d in runs:
        rs = d["records"]
        if rs:
            ax.errorbar(
                [r["minutes"] for r in rs],
                [r["log_likelihood"] for r in rs],
                yerr=[r["log_likelihood_se"] for r in rs],
                marker="o",
                capsize=3,
                label=f"aevb {d['name']}",
            )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lines = [(p[0], p[1], "--") for p in PUBLISHED] + [(p[0], p[1], ":") for p in PREVIOUS]
    for i, (label, value, style) in enumerate(lines):
        ax.axhline(value, ls=style, lw=1.2, color=colours[(i + 1) % len(colours)], label=f"{label}: {value}")
    ax.set_xlabel("training minutes (optimiser steps; evaluation not counted)")
    ax.set_ylabel("test log p(x), nats per image (higher is better)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, title="dashed: published; dotted: aevb before")
    fig.tight_layout()
    return fig


def _recipe_number(train_args: list[str]) -> tuple[str, float] | None:
    """(recipe, its published test log p(x)) for train args that name a recipe with one, else None."""
    from aevb.recipes import RECIPES

    if "--recipe" not in train_args:
        return None
    name = train_args[train_args.index("--recipe") + 1]
    published = RECIPES.get(name, {}).get("published_nll")
    return None if published is None else (name, -published)


def _seconds_a_pass(r: dict) -> str:
    """Training seconds per pass up to record r, the machine's speed for this run ("": no pass yet)."""
    return f"{60 * r['minutes'] / r['epochs']:.2f}" if r["epochs"] > 0 else ""


def _kept(d: dict) -> str:
    """ "; kept at ..." when `likelihood.py keep` noted how far the run's copy in benchmarks/runs is, else ""."""
    k = d.get("kept")
    return f"; kept at {k['epochs']:.1f} passes, {k['minutes']:.1f} training minutes ({k['when'][:10]})" if k else ""


def not_reached(runs: list[dict]) -> list[str]:
    """What the records did not reach, and the facts that say why: each run's state (lost, in progress, not
    on MNIST) as a line, then one table row per MNIST run: its best measurement within each goal's minutes, and
    its last one against the published number of the recipe it trains (Burda et al.'s one-layer VAE without
    one)."""
    out, rows = [], []
    for d in runs:
        rs = d["records"]
        if not rs:
            out.append(f"- `{d['name']}`: no measurement yet{_kept(d)}.")
            continue
        if not rs[-1]["data"].startswith("mnist test"):
            out.append(f"- `{d['name']}`: measured on {rs[-1]['data']}, not the MNIST test set: not compared.")
            continue
        last = rs[-1]
        state = "finished its epochs" if last["finished"] else "stopped at its time limit"
        budget = d.get("budget_minutes", last["target_minutes"])
        if d.get("lost"):  # its run directory is gone for good: no further measurement
            state = "lost"
            out.append(f"- `{d['name']}`: stopped for good after {last['minutes']:.1f} minutes: {d['lost']}")
        elif not last["finished"] and last["target_minutes"] < budget:
            state = f"in progress ({last['minutes']:.1f} of {budget:g} min)"
            out.append(f"- `{d['name']}`: in progress, {last['minutes']:.1f} of {budget:g} minutes trained so far.")
        cells = []
        for minutes, goal in TARGETS:
            within = [r for r in rs if r["minutes"] <= minutes * 1.01]
            if not within:
                early = last["minutes"] < minutes and not last["finished"]
                cells.append("not trained that long yet" if early else "no measurement")
                continue
            best = max(within, key=lambda r: r["log_likelihood"])
            gap = goal - best["log_likelihood"]
            verdict = "reached" if gap <= 0 else f"{gap:.2f} short"
            cells.append(f"{verdict}: {best['log_likelihood']:.2f} at {best['minutes']:.1f} min")
        label, value = _recipe_number(d["train_args"]) or (REFERENCE[0], REFERENCE[1])
        gap = value - last["log_likelihood"]
        versus = f"{abs(gap):.2f} {'short of' if gap > 0 else 'above'} {label} ({value})"
        cells.append(f"{versus} after {last['epochs']:.1f} passes, {last['minutes']:.1f} min")
        rows.append(f"| `{d['name']}` | {state} | " + " | ".join(cells) + " |")
    if rows:
        goals = " | ".join(f"within {minutes:g} min (goal {goal})" for minutes, goal in TARGETS)
        last = "last, against its recipe's published number (without one: the one-layer VAE)"
        out += ["", f"| run | state | {goals} | {last} |"]
        out += ["|---|---|" + "---|" * len(TARGETS) + "---|", *rows]
    return out


def write(docs: Path) -> Path:
    """Write docs/likelihood.md and likelihood.png from the records there; returns the page's path."""
    runs = read_all(docs)
    docs.mkdir(parents=True, exist_ok=True)
    plots.save(figure(runs), docs / "likelihood.png")
    lines = [
        "# Time to likelihood: MNIST test log p(x) against training minutes",
        "",
        "Written by `python benchmarks/likelihood.py report` (and after every measurement of "
        "`benchmarks/likelihood.py run`) from the `likelihood_*.json` records beside this page; every aevb number "
        "was measured by the commands shown. Test log p(x): importance-sampled with k samples per image "
        "(`aevb eval --k`), mean ± standard error over the test images, nats per image, higher is better. "
        "Training minutes are the run's own count of optimiser-step time over all its resumes (`--time-limit`): "
        "start-up, per-epoch validation and evaluation are not counted.",
        "",
        "A measurement: `OMP_NUM_THREADS=2 python benchmarks/likelihood.py run NAME --minutes 120 --eval-at 15 60 "
        "-- [aevb train args]` (the same command again continues it; the records say which commands ran). "
        "A run that outlives its machine is kept with `python benchmarks/likelihood.py keep NAME` (its last "
        "checkpoint, in benchmarks/runs/NAME, committed); the same `run` command on another machine puts it back "
        "and continues it. "
        "Goals of issue 18 on the project's 2-core CPU: "
        + ", ".join(f"{goal} within {minutes:g} minutes" for minutes, goal in TARGETS)
        + ".",
        "",
        "## aevb against published numbers",
        "",
        "| model | test log p(x) | k | test images | data | training | source |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for d in runs:
        for r in d["records"]:
            lines.append(
                f"| aevb `{d['name']}` | {_nats(r)} | {r['k']} | {r['examples']} | {r['data']}, {r['binarize']} | "
                f"{_minutes(r['minutes'])} min, {r['epochs']:.1f} passes{' (finished)' if r['finished'] else ''} | "
                f"this benchmark, {r['git_commit'][:12]} |"
            )
    for label, value, se, command, source in PREVIOUS:
        lines.append(f"| {label} | {value} ± {se} | 5000 | 10000 | MNIST, dynamic | `{command}` | {source} |")
    for label, value, training, data, source in PUBLISHED:
        lines.append(f"| {label} | {value} | 5000 | 10000 | {data} | {training} | {source} |")
    lines += ["", f"Binarisation of Burda et al.: {IWAE_BINARISATION}.", ""]
    lines += ["## Curves", "", "![test log p(x) against training minutes](likelihood.png)", ""]
    lines += ["## Runs and commands", ""]
    for d in runs:
        lines += [
            f"### `{d['name']}`",
            "",
            f"Run directory `{d['run']}`; `aevb train {' '.join(d['train_args'])}`."
            + (f" Lost: {d['lost']}" if d.get("lost") else ""),
            "",
        ]
        if not d["records"]:
            lines += [f"No measurement yet{_kept(d)}.", ""]
            continue
        lines += [
            "| minutes | passes | s a pass | steps | test log p(x) | k | machine | commands |",
            "|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for r in d["records"]:
            m = r["machine"]
            where = f"{m['cpu']}, {m['cores']} cores" + (f", {m['gpu']}" if m.get("gpu") else "")
            if m.get("load_average_1_5_15"):  # runnable processes over the last 15 minutes, beside the cores
                where += f", load {m['load_average_1_5_15'][2]:g}"
            cmds = f"`{r['command']}`: `{r['train_command']}`, then `{r['eval_command']}`"
            lines.append(
                f"| {_minutes(r['minutes'])} | {r['epochs']:.2f} | {_seconds_a_pass(r)} | {r['steps']} | {_nats(r)} | "
                f"{r['k']} | "
                f"{where} | {cmds} |"
            )
        lines.append("")
    lines += gradient_table(runs)
    lines += ["## Not reached, and why", ""]
    if not runs:
        lines.append("- No run has been measured yet.")
    else:
        lines += not_reached(runs) or ["- Every goal and published number was reached by the runs above."]
    lines.append("")
    notes = docs / "likelihood_notes.md"
    if notes.exists():
        lines += [notes.read_text()]
    path = docs / "likelihood.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
