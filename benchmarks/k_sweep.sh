#!/usr/bin/env bash
# Accuracy against K (minibatches per exchange) for APFed-C on mnist5k, 2 views, default preset.
# K = 32 is one exchange per epoch (4000 / 128 = 32 minibatches). Usage: benchmarks/k_sweep.sh OUTDIR [DEVICE]
set -u
out=${1:?OUTDIR}; dev=${2:-cuda}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p "$out"
for k in 1 4 16 32; do
  python3 -m apfed.cli evaluate --dataset mnist5k --active top --methods apfed-c --seeds 3 --jobs 3 --k $k \
    --device "$dev" --out "$out/k$k" >"$out/k$k.log" 2>&1 &
done
wait
