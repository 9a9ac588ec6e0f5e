#!/usr/bin/env bash
# Accuracy against K (minibatches per exchange) for APFed-C on mnist5k, 2 views, default preset, with and without
# pipelining. K = 32 is one exchange per epoch (4000 / 128 = 32 minibatches).
# Usage: benchmarks/k_sweep.sh OUTDIR [DEVICE] [KS] [PIPELINE: both|on|off]
set -u
out=${1:?OUTDIR}; dev=${2:-cuda}; ks=${3:-"1 4 16 32"}; modes=${4:-both}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p "$out"
for k in $ks; do
  for p in off on; do
    [ "$modes" != both ] && [ "$modes" != $p ] && continue
    flag=--no-pipeline; name=k$k; [ $p = on ] && flag=--pipeline && name=k$k-pipelined
    python3 -m apfed.cli evaluate --dataset mnist5k --active top --methods apfed-c --seeds 3 --jobs 3 --k $k $flag \
      --device "$dev" --out "$out/$name" >"$out/$name.log" 2>&1 &
  done
done
wait
