"""What the optimizers' fused CPU kernels save per in-process epoch: the same run's epochs, every party's optimizer
switched between torch's fused kernel (the CPU default since 2026-12-06) and the foreach ops before each epoch, in
either order in turn. APFed-C, K = 1, CPU: handwritten and mnist5k with the default preset (Adam), mnist5k with the
paper preset (SGD with momentum).

Usage: python benchmarks/fused_optimizers.py [--pairs 15] [--threads 0]
       [--out benchmarks/results/DATE-fused-optimizers-cpu]"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date
from pathlib import Path

import torch

from apfed.config import make_config
from apfed.data.bundled import load_bundled
from apfed.report import write_benchmark
from apfed.runner import build_clients, in_process_passives


def paired_epochs(dataset: str, preset: str, pairs: int) -> dict:
    ds = load_bundled(dataset)
    active = ds.view_index("fou") if dataset == "handwritten" else 0
    client = build_clients(ds, active, make_config(preset, method="apfed-c", epochs=1))
    client.setup()
    client.evaluate = lambda: {"accuracy": 0.0}
    opts = [*client.learner.opts, *(p.learner.opt for p in in_process_passives(client))]
    kernel = opts[0]._fused
    if kernel is None:
        raise SystemExit("this torch has no fused optimizer kernel for the CPU")
    client.fit()  # warm-up
    times: dict[str, list[float]] = {"foreach": [], "fused": []}
    for r in range(pairs):
        for mode in ("fused", "foreach") if r % 2 else ("foreach", "fused"):
            for o in opts:
                o._fused = kernel if mode == "fused" else None
            client.history.clear()
            t = time.perf_counter()
            client.fit()
            times[mode].append(time.perf_counter() - t)
    fe, fu = statistics.median(times["foreach"]), statistics.median(times["fused"])
    faster = sum(a < b for a, b in zip(times["fused"], times["foreach"], strict=True))
    return {
        "dataset": dataset,
        "preset": preset,
        "foreach_s": fe,
        "fused_s": fu,
        "ratio": fu / fe,
        "fused_faster": faster,
        **times,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", default=f"benchmarks/results/{date.today()}-fused-optimizers-cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    points = [("handwritten", "default"), ("mnist5k", "default"), ("mnist5k", "paper")]
    rows = [paired_epochs(d, p, a.pairs) for d, p in points]
    md = [
        f"# Fused CPU optimizer kernels against foreach ops: in-process APFed-C epochs, {a.pairs} pairs each",
        "",
        "| dataset | preset (optimizer) | foreach (s, median) | fused (s, median) | fused / foreach "
        "| pairs where fused is faster |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['dataset']} | {r['preset']} ({'SGD' if r['preset'] == 'paper' else 'Adam'}) | "
            f"{r['foreach_s']:.4f} | {r['fused_s']:.4f} | {r['ratio']:.3f} | "
            f"{r['fused_faster']}/{a.pairs} |"
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
