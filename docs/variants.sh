#!/usr/bin/env bash
# Regenerates the numbers and figures of docs/variants.md. Usage: bash docs/variants.sh [WORK_DIR]
# Needs MNIST (AEVB_DATA_DIR or ~/.cache/aevb). A run that already has its eval.json is kept.
# Every model: dynamically binarised MNIST, 20-D latent, Adam lr 1e-3, M = 100, ReLU, seed 0,
# EPOCHS epochs (default 3: a short CPU budget); evaluated on the first 2,000 test images (binarised
# once with the fixed test seed) with k = 500 importance samples.
set -euo pipefail
docs="$(cd "$(dirname "$0")" && pwd)"
work="${1:-runs/variants}"
epochs="${EPOCHS:-3}"
fig="$docs/figures/variants"
mkdir -p "$work" "$fig"
cd "$work"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
common=(--dataset mnist --latent-dim 20 --activation relu --no-progress)

train() {  # NAME FLAGS...
  local name=$1; shift
  if [ ! -f "$name/eval.json" ]; then
    rm -rf "$name"
    aevb train --out "$name" "${common[@]}" "$@" > "$name.train.log"
  fi
}

train mlp --hidden 400 --epochs "$epochs"
train beta2 --hidden 400 --epochs "$epochs" --beta 2
train warmup --hidden 400 --epochs "$epochs" --kl-warmup 2
train freebits --hidden 400 --epochs "$epochs" --free-bits 0.5
train iwae5 --hidden 400 --epochs "$epochs" --objective iwae --k 5
train mog --hidden 400 --epochs "$epochs" --prior mog --prior-components 10
train vamp --hidden 400 --epochs "$epochs" --prior vamp --prior-components 100
train cvae --hidden 400 --epochs "$epochs" --condition-on labels  # evaluated as log p(x|y), with the test labels
train resmlp --hidden 400 400 --epochs "$epochs" --arch resmlp
# conv at the MLP's wall-clock budget: one epoch to time it, then as many epochs as fit (--resume)
if [ ! -f conv/eval.json ]; then
  train conv --hidden 256 --channels 32 64 --arch conv --epochs 1
  n=$(python3 - <<'PY'
import json
last = lambda r: [json.loads(l) for l in open(f"{r}/metrics.jsonl")][-1]
print(max(1, round(last("mlp")["seconds"] / last("conv")["seconds"])))
PY
)
  aevb train --resume conv --epochs "$n" --no-progress >> conv.train.log
fi

python3 - "$fig" <<'PY'
"""Evaluate every run the same way; write eval.json per run, results.md and the figures."""
import json, sys
from pathlib import Path
import torch
import aevb
from aevb.checkpoint import read_config
from aevb.evaluate import active_units, elbo_terms, log_likelihood, summarize
from aevb.preprocess import run_data
from aevb.rundir import read_metrics
from aevb import plots

fig = Path(sys.argv[1])
runs = [r for r in ["mlp", "beta2", "warmup", "freebits", "iwae5", "mog", "vamp", "conv", "cvae", "resmlp"] if Path(r).is_dir()]
rows = []
for r in runs:
    model = aevb.load(r)
    _, t = read_config(r)
    x, y, _ = run_data(model.config, t.binarize, "mnist", "test")
    y = y if model.config.conditional else None  # a conditional run: log p(x|y) with the test labels
    if not Path(r, "eval.json").exists():
        xs, ys = x[:2000], (None if y is None else y[:2000])
        ll = log_likelihood(model, xs, k=500, batch_size=100, seed=0, y=ys)
        e = elbo_terms(model, xs, y=ys)
        m = read_metrics(r)[-1]
        res = {"log_likelihood": summarize(ll), "elbo": summarize(e.elbo), "kl": summarize(e.kl)[0],
               "active_units": active_units(model, x, y=y), "epochs": m["epoch"], "train_seconds": m["seconds"]}
        Path(r, "eval.json").write_text(json.dumps(res, indent=1))
    res = json.loads(Path(r, "eval.json").read_text())
    rows.append((r, res))
with open("results.md", "w") as f:
    f.write("| run | epochs | train s | test log p(x) | test ELBO | KL | active units |\n|---|---|---|---|---|---|---|\n")
    for r, s in rows:
        f.write(f"| {r} | {s['epochs']} | {s['train_seconds']:.0f} | {s['log_likelihood'][0]:.2f} ± {s['log_likelihood'][1]:.2f} "
                f"| {s['elbo'][0]:.2f} ± {s['elbo'][1]:.2f} | {s['kl']:.2f} | {s['active_units']} / 20 |\n")
print(open("results.md").read())

plt = plots.pyplot()
# beta / warm-up / free bits: validation KL and ELBO per epoch
f, ax = plt.subplots(1, 2, figsize=(9, 3.2))
for r in ["mlp", "beta2", "warmup", "freebits"]:
    m = read_metrics(r)
    ax[0].plot([q["epoch"] for q in m], [q["valid_kl"] for q in m], marker="o", label=r)
    ax[1].plot([q["epoch"] for q in m], [q["valid_elbo"] for q in m], marker="o", label=r)
ax[0].set(xlabel="epoch", ylabel="validation KL (nats)"); ax[1].set(xlabel="epoch", ylabel="validation ELBO (nats)")
ax[0].legend(); f.tight_layout(); plots.save(f, fig / "kl-curves.png")
# IWAE: L_k against k on the first 500 test images, ELBO- and IWAE-trained models
f, ax = plt.subplots(figsize=(4.5, 3.2))
ks = [1, 5, 50, 500]
for r in ["mlp", "iwae5"]:
    model = aevb.load(r)
    _, t = read_config(r)
    x = run_data(model.config, t.binarize, "mnist", "test")[0][:500]
    ax.plot(ks, [log_likelihood(model, x, k=k, batch_size=100).mean().item() for k in ks], marker="o", label=r)
ax.set(xscale="log", xlabel="k", ylabel="E[L_k] (nats), 500 test images"); ax.legend(); f.tight_layout()
plots.save(f, fig / "iwae-bounds.png")
PY

aevb sample mlp --n 64 --out "$fig/samples-mlp-prior.png"
aevb sample mlp --n 64 --from aggregate --out "$fig/samples-mlp-aggregate.png"
aevb sample conv --n 64 --out "$fig/samples-conv.png"
aevb sample mog --n 64 --out "$fig/samples-mog.png"
aevb sample vamp --n 64 --out "$fig/samples-vamp.png"
aevb sample beta2 --n 64 --out "$fig/samples-beta2.png"
aevb sample cvae --n 80 --out "$fig/samples-cvae.png"  # the classes in turn: one digit per column
aevb traverse cvae --label 7 --dims 0 1 2 3 4 5 6 7 --n 9 --out "$fig/traversals-cvae-7.png"
aevb interpolate mlp --from 0 --to 1 --steps 10 --out "$fig/interpolation.png"
aevb traverse mlp --index 0 --dims 0 1 2 3 4 5 6 7 --n 9 --out "$fig/traversals.png"
cp results.md "$fig/results.md"
