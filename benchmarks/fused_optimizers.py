"""What the optimizers' fused CPU kernels save per in-process epoch: the same run's epochs, every party's optimizer
switched between torch's fused kernel (the CPU default since 2026-12-06) and the foreach ops before each epoch, in
either order in turn. APFed-C, K = 1, CPU: handwritten and mnist5k with the default preset (Adam), mnist5k with the
paper preset (SGD with momentum).

Usage: python benchmarks/fused_optimizers.py [--pairs 15] [--threads 0]
       [--out benchmarks/results/DATE-fused-optimizers-cpu]"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch

from apfed.report import write_benchmark
from apfed.runner import in_process_passives
from apfed.speed import paired_epochs


def switches(client) -> dict:
    """Every party's optimizer to its foreach ops, or back to torch's fused kernel."""
    opts = [*client.learner.opts, *(p.learner.opt for p in in_process_passives(client))]
    kernels = [o._fused for o in opts]
    if any(k is None for k in kernels):
        raise SystemExit("this torch has no fused optimizer kernel for the CPU")

    def use(fused: bool) -> Callable[[], None]:
        def switch() -> None:
            for o, k in zip(opts, kernels, strict=True):
                o._fused = k if fused else None

        return switch

    return {"foreach": use(False), "fused": use(True)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", default=f"benchmarks/results/{date.today()}-fused-optimizers-cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    points = [("handwritten", "default"), ("mnist5k", "default"), ("mnist5k", "paper")]
    rows = [paired_epochs(d, p, switches, a.pairs) for d, p in points]
    md = [
        f"# Fused CPU optimizer kernels against foreach ops: in-process APFed-C epochs, {a.pairs} pairs each",
        "",
        "| dataset | preset (optimizer) | foreach (s, median) | fused (s, median) | fused / foreach "
        "| pairs where fused is faster |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['dataset']} | {r['preset']} ({'SGD' if r['preset'] == 'paper' else 'Adam'}) | "
            f"{r['foreach_s']:.4f} | {r['fused_s']:.4f} | {r['ratio']:.3f} | "
            f"{r['faster']}/{a.pairs} |"
            for r in rows
        ),
        "",
        f"K = 1, torch threads {torch.get_num_threads()}; every party's optimizer switched"
        " before each epoch of one run, the two in either order in turn. The updates are the same up to float"
        " rounding (each is bit for bit torch.optim's, fused or foreach).",
    ]
    cmd = f"python benchmarks/fused_optimizers.py --pairs {a.pairs}" + (f" --threads {a.threads}" if a.threads else "")
    write_benchmark(Path(a.out), {"benchmark": "fused optimizers", "rows": rows, "command": cmd}, md)


if __name__ == "__main__":
    main()
