"""A run report: one self-contained HTML file (figures embedded as data: URIs, no network needed).

It shows the run's config, the training curves, the test ELBO and importance-sampled log p(x)
(with k and the binarisation named), prior samples, reconstructions next to their inputs, the
test posterior means in 2-D (a PCA projection, labelled as such, when latent_dim > 2) and the
2-D manifold. Tabular runs get per-feature reconstruction error and sample statistics against
the test data instead of image grids. `build_report` returns the HTML; `write_report` writes it
atomically.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import plots
from .checkpoint import MODEL, load, read_config
from .config import TrainConfig
from .evaluate import ACTIVE_THRESHOLD, evaluation_record
from .files import atomic_write_text
from .model import VAE
from .preprocess import check_labels, run_data
from .projection import latent_projection
from .rundir import read_metrics

DEFAULT_K = 100  # importance samples of the report's own log p(x): quick; `aevb eval` uses 5000
N_SAMPLES, N_RECON, N_MANIFOLD = 64, 16, 20
N_TABLE_SAMPLES = 2000  # draws x ~ p(x|z) behind the sample statistics of tabular runs


def test_evaluation(
    run_dir: Path,
    model: VAE,
    train_cfg: TrainConfig,
    x: torch.Tensor,
    k: int | None,
    seed: int = 0,
    on_batch: Callable[[int], None] | None = None,
    y: torch.Tensor | None = None,
) -> dict[str, Any]:
    """The test set's `aevb.evaluate.evaluation_record` (ELBO, log p(x), bits/dim, active units; nats per
    example, with standard errors) and the binarisation, as `aevb eval` stores them.

    With k=None, RUN/eval_test.json is used when it is newer than the model; otherwise they are
    computed here with k (default DEFAULT_K) importance samples.
    """
    stored = run_dir / "eval_test.json"
    if k is None and stored.exists() and stored.stat().st_mtime >= (run_dir / MODEL).stat().st_mtime:
        try:
            res = json.loads(stored.read_text())
            if all(key in res for key in ("elbo", "log_likelihood", "k", "binarize")):
                return {**res, "source": f"read from {stored.name}"}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            pass  # an unreadable result is recomputed
    k = k or DEFAULT_K
    res = evaluation_record(model, x, k, seed, y=y, on_batch=on_batch)
    return {"binarize": train_cfg.binarize, **res, "source": "computed for this report"}


def table_statistics(
    model: VAE, x: torch.Tensor, n_samples: int = N_TABLE_SAMPLES, seed: int = 0, y: torch.Tensor | None = None
) -> dict:
    """Per feature (D,): test mean/std, mean/std of draws x ~ p(x|z), z ~ p(z) (the model's own prior), and
    the RMSE of E[x|z=mu(x)].
    A conditional model's (labels y of x): reconstructions with x's labels, draws with the test labels in turn."""
    x = x.reshape(x.shape[0], -1)
    g = torch.Generator().manual_seed(seed)
    ys = None if y is None else y[torch.arange(n_samples) % y.shape[0]]
    xr = model.reconstruct(x, y)
    with torch.no_grad():
        s = model.draw(model.sample_prior(n_samples, g), ys, g)  # z ~ p(z), the run's own prior
    return {
        "data_mean": x.mean(0).numpy(),
        "data_std": x.std(0).numpy(),
        "sample_mean": s.mean(0).numpy(),
        "sample_std": s.std(0).numpy(),
        "recon_rmse": (x - xr).pow(2).mean(0).sqrt().numpy(),
    }


def build_report(
    run_dir: str | Path,
    k: int | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    on_batch: Callable[[int], None] | None = None,
    model: VAE | None = None,
) -> str:
    """The HTML text of the report of a run directory; `model`: the run's, loaded already (`load(run_dir)`
    with your own networks), else loaded here."""
    run_dir = Path(run_dir)
    model_cfg, train_cfg = read_config(run_dir)
    train_cfg = train_cfg or TrainConfig()
    model = model if model is not None else load(run_dir)
    x, labels, source = run_data(model_cfg, train_cfg.binarize, train_cfg.dataset, "test", None, data_dir)
    y = check_labels(labels, x.shape[0], model_cfg, source)  # a conditional run's labels, else None
    ev = test_evaluation(run_dir, model, train_cfg, x, k, seed, on_batch, y)
    is_image = plots.is_image(model_cfg.data_shape)
    with torch.no_grad():
        mu = model.top(model.encode(x, y).mean).numpy()  # a stack's top layer z_L
    sections = [_eval_section(ev, source, model), _curves_section(run_dir)]
    if is_image:
        sections.append(_image_sections(model, x, seed, y))
    else:
        sections.append(_table_section(table_statistics(model, x, seed=seed, y=y)))
    sections.append(_latent_section(mu, labels, source, len(model_cfg.layers) > 1))
    if is_image and model.top_dim == 2 and y is None:  # a conditional run has one manifold per class
        sections.append(_figure("The learned 2-D manifold", plots.image_grid(plots.manifold_images(model, N_MANIFOLD))))
        sections[-1] += "<p>E[x|z] over a grid of the unit square mapped through the inverse Gaussian CDF.</p>"
    sections.append(_config_section(model_cfg, train_cfg))
    summary = {k2: ev.get(k2) for k2 in ("elbo", "elbo_se", "log_likelihood", "log_likelihood_se", "k", "binarize")}
    summary.update(run=run_dir.name, examples=int(x.shape[0]), latent_dim=model_cfg.latent_dim)
    return _page(f"aevb report: {run_dir.name}", sections, summary)


def write_report(run_dir: str | Path, out: str | Path | None = None, **kw) -> Path:
    """Build the report and write it atomically to `out` (default RUN/report.html); returns the path."""
    out = Path(out) if out else Path(run_dir) / "report.html"
    return atomic_write_text(out, build_report(run_dir, **kw))


# --- HTML pieces --------------------------------------------------------------------------------


def _esc(v: Any) -> str:
    return html.escape(str(v))


def _data_uri(fig) -> str:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=100)
    finally:
        plots.pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(title: str, fig, alt: str | None = None) -> str:
    return f'<section><h2>{_esc(title)}</h2><img alt="{_esc(alt or title)}" src="{_data_uri(fig)}"></section>'


def _rows(pairs) -> str:
    return "".join(f"<tr><th>{_esc(a)}</th><td>{_esc(b)}</td></tr>" for a, b in pairs)


def _config_section(model_cfg, train_cfg) -> str:
    m, t = dataclasses.asdict(model_cfg), dataclasses.asdict(train_cfg)
    return (
        '<section><h2>Configuration</h2><div class="cols">'
        f'<table id="model-config"><caption>model</caption>{_rows(m.items())}</table>'
        f'<table id="train-config"><caption>training</caption>{_rows(t.items())}</table></div></section>'
    )


def _curves_section(run_dir: Path) -> str:
    records = read_metrics(run_dir)
    if not records:
        return "<section><h2>Training curves</h2><p>No metrics recorded (metrics.jsonl is empty).</p></section>"
    last = records[-1]
    return _figure("Training and validation curves", plots.curves(records)) + (
        f"<p>{len(records)} epochs, {last.get('seconds', 0):.1f} s of training; last validation ELBO "
        f"{last['valid_elbo']:.3f} nats per example.</p>"
    )


def _eval_section(ev: dict, source: str, model: VAE) -> str:
    binarize = {
        "dynamic": "dynamic binarisation in training; the test set binarised once (fixed seed 2)",
        "static": "static binarisation; the test set binarised once (fixed seed 2)",
        "none": "none (the data are scored as they are)",
    }.get(ev["binarize"], ev["binarize"])
    rows = [
        ("data", f"{source}, {ev.get('examples', '?')} examples"),
        ("likelihood", model.config.likelihood),
        ("binarisation", binarize),
        ("ELBO", f"{ev['elbo']:.3f} ± {ev['elbo_se']:.3f}"),
        (
            "log p(x | y), the test labels y" if model.config.conditional else "log p(x)",
            f"{ev['log_likelihood']:.3f} ± {ev['log_likelihood_se']:.3f} (importance sampled, k = {ev['k']})",
        ),
        ("bits/dim", f"{ev['bits_per_dim']:.4f}" if "bits_per_dim" in ev else "-"),
        (
            "active units",
            f"{ev['active_units']} of {ev['latent_dim']} (Var_x E_q[z_j] > {ACTIVE_THRESHOLD:g}, Burda et al. 2016)"
            if "active_units" in ev
            else "-",
        ),
        ("source", ev["source"] + ("" if "read" in ev["source"] else f", evaluation seed {ev['seed']}")),
    ]
    if len(ev.get("latents", ())) > 1:  # a stack: active units of each layer
        per = ", ".join(
            f"z_{i + 1}: {a} of {d}" for i, (a, d) in enumerate(zip(ev["active_units_per_layer"], ev["latents"]))
        )
        rows.insert(-1, ("active units per layer", per))
    if "kl_per_layer" in ev:  # a stack: its KL term, layer by layer
        per = ", ".join(f"z_{i + 1}: {v:.3f}" for i, v in enumerate(ev["kl_per_layer"]))
        rows.insert(-1, ("KL per layer (nats)", per))
    return (
        '<section><h2>Test set</h2><table id="evaluation">' + _rows(rows) + "</table>"
        "<p>Nats per example, higher is better; ± is the standard error over test examples. log p(x) is the "
        f"IWAE bound L_k with k = {ev['k']}: a lower bound in expectation that tightens as k grows.</p></section>"
    )


def _image_sections(model: VAE, x: torch.Tensor, seed: int, y: torch.Tensor | None = None) -> str:
    c = model.config  # a conditional run's samples: the classes in turn, one per column
    ys = torch.arange(N_SAMPLES) % c.classes if c.conditional else None
    samples = model.sample(N_SAMPLES, torch.Generator().manual_seed(seed), y=ys).numpy()
    xs, yr = x[:N_RECON], (None if y is None else y[:N_RECON])
    xr = model.reconstruct(xs, yr)
    ncols = min(8, xs.shape[0])
    rows = [t for i in range(0, xs.shape[0], ncols) for t in (xs[i : i + ncols], xr[i : i + ncols])]
    rows = [torch.cat([r, torch.ones(ncols - r.shape[0], *r.shape[1:])]) for r in rows]
    return (
        _figure("Prior samples", plots.image_grid(samples), "samples")
        + f"<p>E[x|z] for {N_SAMPLES} draws z ~ p(z) (seed {seed}).</p>"
        + _figure("Reconstructions", plots.image_grid(torch.cat(rows).numpy(), ncols), "reconstructions")
        + "<p>Rows of test inputs (as scored) above their reconstructions E[x | z = posterior mean].</p>"
    )


def _table_section(st: dict) -> str:
    plt = plots.pyplot()
    d = len(st["data_mean"])
    idx = np.arange(1, d + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.errorbar(idx - 0.1, st["data_mean"], st["data_std"], fmt="o", label="test data: mean ± std")
    a.errorbar(idx + 0.1, st["sample_mean"], st["sample_std"], fmt="s", label="samples x ~ p(x): mean ± std")
    a.set_xlabel("feature")
    a.legend(fontsize=8)
    b.bar(idx, st["recon_rmse"])
    b.set_xlabel("feature")
    b.set_ylabel("RMSE of E[x|z = posterior mean]")
    fig.tight_layout()
    head = "<tr><th>feature</th><th>data mean</th><th>sample mean</th><th>data std</th><th>sample std</th>"
    head += "<th>reconstruction RMSE</th></tr>"
    keys = ("data_mean", "sample_mean", "data_std", "sample_std", "recon_rmse")
    body = "".join(
        f"<tr><td>x{i + 1}</td>" + "".join(f"<td>{st[key][i]:.4g}</td>" for key in keys) + "</tr>" for i in range(d)
    )
    return (
        _figure("Samples and reconstructions, per feature", fig, "feature statistics")
        + f'<table id="features">{head}{body}</table>'
        + f"<p>Samples: {N_TABLE_SAMPLES} draws x ~ p(x|z), z ~ p(z). Reconstruction error on the test set.</p>"
    )


def _latent_section(mu: np.ndarray, labels: torch.Tensor | None, source: str, stack: bool = False) -> str:
    proj = latent_projection(mu)
    pts = proj(mu)
    if proj.kind == "latent-1d":
        pts[:, 1] = np.random.default_rng(0).uniform(-0.5, 0.5, len(pts))  # jitter so points do not overlap
    with warnings.catch_warnings():  # without labels matplotlib warns that the colour map is unused
        warnings.simplefilter("ignore", UserWarning)
        fig = plots.latent_scatter(pts, labels.numpy() if labels is not None else None)
    ax = fig.axes[0]
    ax.set_xlabel(proj.axes[0])
    ax.set_ylabel("(random jitter)" if proj.kind == "latent-1d" else proj.axes[1])
    what = {"latent": "the latent itself", "pca": "a PCA projection to 2-D", "latent-1d": "z1 with random jitter"}
    title = f"Test posterior means{' of the top layer z_L' if stack else ''} ({what[proj.kind]})"
    return _figure(title, fig, "latent space") + f"<p>{len(mu)} examples of {_esc(source)}, coloured by label.</p>"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 1.5em .5em 0;font-size:.9em}th,td{padding:.15em .6em;
border-bottom:1px solid #eee;text-align:left}caption{font-weight:bold;text-align:left}
.cols{display:flex;flex-wrap:wrap}img{max-width:100%;image-rendering:pixelated}p{color:#555}"""


def _page(title: str, sections: list[str], summary: dict) -> str:
    data = json.dumps(summary).replace("</", "<\\/")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body><h1>{_esc(title)}</h1>"
        + "\n".join(sections)
        + f'<script type="application/json" id="aevb-summary">{data}</script></body></html>\n'
    )
