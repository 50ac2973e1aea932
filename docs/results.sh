#!/usr/bin/env bash
# Regenerates the numbers and figures of docs/results.md. Usage: bash docs/results.sh [WORK_DIR]
# Needs the datasets (AEVB_DATA_DIR or ~/.cache/aevb). A run whose eval_test.json exists is kept.
set -euo pipefail
docs="$(cd "$(dirname "$0")" && pwd)"
work="${1:-runs/results}"
mkdir -p "$work" "$docs/figures"
cd "$work"

run() {  # NAME EVAL_K TRAIN_FLAGS...
  local name=$1 k=$2; shift 2
  if [ ! -f "$name/eval_test.json" ]; then
    rm -rf "$name"
    aevb train --out "$name" --no-progress "$@" > "$name.train.log"
    /usr/bin/time -f "%e s wall, %M KiB peak RSS" -o "$name.eval.time" aevb eval "$name" --k "$k" --no-progress > "$name.eval.log"
  fi
  cat "$name.eval.log" "$name.eval.time"
}

run mnist-400-20 5000 --dataset mnist --hidden 400 --latent-dim 20 --activation relu --epochs 50
run binarized-mnist-400-20 5000 --dataset binarized-mnist --hidden 400 --latent-dim 20 --activation relu --epochs 50
run mnist-500-2 1000 --dataset mnist --hidden 500 --latent-dim 2 --epochs 30
run frey-face-200-2 1000 --dataset frey-face --likelihood gaussian-learned --hidden 200 --latent-dim 2 --epochs 300 --lr 0.003

aevb sample mnist-400-20 --n 64 --out "$docs/figures/mnist-400-20-samples.png"
aevb reconstruct mnist-400-20 --n 32 --out "$docs/figures/mnist-400-20-reconstructions.png"
aevb plot mnist-400-20 --out "$docs/figures/mnist-400-20-curves.png"
aevb manifold mnist-500-2 --n 20 --out "$docs/figures/mnist-500-2-manifold.png"
aevb encode mnist-500-2 --out mnist-500-2/encoded_test.npz --plot "$docs/figures/mnist-500-2-latent.png"
aevb manifold frey-face-200-2 --n 12 --out "$docs/figures/frey-face-200-2-manifold.png"
aevb sample frey-face-200-2 --n 36 --out "$docs/figures/frey-face-200-2-samples.png"
