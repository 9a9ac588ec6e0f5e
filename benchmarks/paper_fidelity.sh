#!/usr/bin/env bash
# Paper preset on mnist5k, 2 views, both active strips: local, APFed-R, APFed-C, TVFL; 3 seeds; 300 epochs.
# All 24 runs in parallel on one GPU. Usage: benchmarks/paper_fidelity.sh OUTDIR [DEVICE] [EPOCHS]
set -u
out=${1:?OUTDIR}; dev=${2:-cuda}; epochs=${3:-300}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p "$out"
for s in top bottom; do
  for m in local apfed-r apfed-c tvfl; do
    python3 -m apfed.cli evaluate --dataset mnist5k --active $s --methods $m --seeds 3 --jobs 3 --preset paper \
      --epochs "$epochs" --device "$dev" --out "$out/$s-$m" >"$out/$s-$m.log" 2>&1 &
  done
done
wait
