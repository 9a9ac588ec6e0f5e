#!/usr/bin/env bash
# Exploration of cross-party consistent augmentation (mixup, horizontal shift) for the default recipe on
# mnist5k (2 views), local vs apfed-kd under the same recipe. Usage: benchmarks/explore_aug.sh OUTDIR [DEVICE]
set -u
out=${1:?OUTDIR}; dev=${2:-cuda}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
ev() { name=$1; shift; python3 -m apfed.cli evaluate --dataset mnist5k --device "$dev" --out "$out/$name" --seeds 2 "$@" \
        >"$out/$name.log" 2>&1 & }
mkdir -p "$out"
for s in top bottom; do
  ev "$s-m02s2" --active $s --methods local,apfed-kd,tvfl --jobs 6 --set mixup=0.2 --set shift=2
  ev "$s-m1s2" --active $s --methods local,apfed-kd --jobs 4 --set mixup=1.0 --set shift=2
  ev "$s-m02" --active $s --methods local,apfed-kd --jobs 4 --set mixup=0.2
  ev "$s-s2" --active $s --methods local,apfed-kd --jobs 4 --set shift=2
  ev "$s-m02s2-e150" --active $s --methods local,apfed-kd --jobs 4 --set mixup=0.2 --set shift=2 --epochs 150
  ev "$s-m02s2-lam0" --active $s --methods apfed-kd --jobs 2 --set mixup=0.2 --set shift=2 --lam 0
  ev "$s-m02s2-w3" --active $s --methods apfed-kd --jobs 2 --set mixup=0.2 --set shift=2 --kd-weight 3
done
wait
