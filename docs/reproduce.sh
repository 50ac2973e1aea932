#!/usr/bin/env bash
# Regenerates docs/figures/reproduce/ (the figures and CSVs of docs/reproduction.md).
# Usage: bash docs/reproduce.sh   (needs the datasets in $AEVB_DATA_DIR or ~/.cache/aevb, or pass --data-dir via DATA_DIR=...)
# The committed figures use budgets far below the commands' defaults (the reduced runs): they were
# made on a shared 2-core machine in a few minutes of CPU. Drop the --budget flags for the default
# runs (each at most 30 minutes on 2 cores), or use --full for the paper's scale.
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)/figures/reproduce"
mkdir -p "$out"
export OMP_NUM_THREADS=1
dd=()
if [ -n "${DATA_DIR:-}" ]; then dd=(--data-dir "$DATA_DIR"); fi
t() { /usr/bin/time -f "$1: %e s wall, %U s user" -a -o "$out/timings.txt" "${@:2}"; }
rm -f "$out/timings.txt"
# two streams, one per core
(
  t "figure2 mnist" aevb reproduce figure2 --dataset mnist --out "$out" --no-progress "${dd[@]}"  # the default run
  t "figure4" aevb reproduce figure4 --budget 100000 --out "$out" --no-progress "${dd[@]}"
) & a=$!
(
  t "figure2 frey-face" aevb reproduce figure2 --dataset frey-face --budget 100000 --points 6 --out "$out" --no-progress "${dd[@]}"
  t "figure3" aevb reproduce figure3 --budget 30000 --points 4 --out "$out" --no-progress "${dd[@]}"
  t "figure5" aevb reproduce figure5 --budget 50000 --out "$out" --no-progress "${dd[@]}"
) & b=$!
wait "$a"
wait "$b"
cat "$out/timings.txt"
