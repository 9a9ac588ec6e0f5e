#!/usr/bin/env bash
# Exploration of the default recipe's distillation knobs on mnist5k (2 views), many runs in parallel on one GPU.
# Usage: benchmarks/explore_kd.sh OUTDIR [DEVICE]. Each line below is one `apfed evaluate` invocation.
set -u
out=${1:?OUTDIR}; dev=${2:-cuda}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
ev() { name=$1; shift; python3 -m apfed.cli evaluate --dataset mnist5k --device "$dev" --out "$out/$name" "$@" \
        >"$out/$name.log" 2>&1 & }
mkdir -p "$out"
for s in top bottom; do
  ev "$s-base" --active $s --methods local,tvfl,apfed-c,apfed-r --seeds 3 --jobs 4
  ev "$s-kd" --active $s --methods apfed-kd --seeds 2 --jobs 2
  ev "$s-kd-feat" --active $s --methods apfed-kd --seeds 2 --jobs 2 --set feature_weight=1
  ev "$s-kd-nograd" --active $s --methods apfed-kd --seeds 2 --jobs 2 --set teacher_grad=false
  ev "$s-kd-feat-nograd" --active $s --methods apfed-kd --seeds 2 --jobs 2 --set feature_weight=1 --set teacher_grad=false
done
s=bottom
ev "$s-kd-lam0" --active $s --methods apfed-kd --seeds 2 --jobs 2 --lam 0
ev "$s-kd-T8" --active $s --methods apfed-kd --seeds 2 --jobs 2 --kd-temperature 8
ev "$s-kd-w4" --active $s --methods apfed-kd --seeds 2 --jobs 2 --kd-weight 4
ev "$s-kd-ct05" --active $s --methods apfed-kd --seeds 2 --jobs 2 --temperature 0.5
ev "$s-kd-r" --active $s --methods apfed-kd --seeds 2 --jobs 2 --passive-losses r
ev "$s-c-t05" --active $s --methods apfed-c --seeds 2 --jobs 2 --temperature 0.5
ev "$s-c-t02" --active $s --methods apfed-c --seeds 2 --jobs 2 --temperature 0.2
wait
