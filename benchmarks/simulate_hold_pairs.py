"""Flower simulation with several passives, two changes of 2026-12-07 in alternating pairs of runs.

``--compare hold``: a pipelined round held back whole until it is collected, against each passive's part pushed as
soon as that passive has answered the round before (``FlowerTransport.release_per_node``).
``--compare threads``: rounds pushed per passive, the active party with torch's threads against the cores left to
it by the passives' actors (``clients.flower_app.SHARE_CORES``).

mnist5k cut into strips (1 + passives), active strip 0, APFed-C, default preset, K = 16 pipelined. Both variants
train the same model (the test accuracy is reported to show it); only the timing differs.
Usage: python benchmarks/simulate_hold_pairs.py [--compare hold|threads] [--pairs 3] [--passives 2,4] [--epochs 3]
[--k 16] [--threads N] [--out benchmarks/results]
"""

import argparse
import datetime
import statistics
import time
from pathlib import Path

from simulate_vs_inprocess import simulate_strips  # this script's folder

import clients.flower_app as flower_app
from apfed.report import write_benchmark
from protocols.flower import FlowerTransport


def _hold(per_node: bool) -> None:
    FlowerTransport.release_per_node = per_node
    flower_app.SHARE_CORES = False


def _threads(share: bool) -> None:
    FlowerTransport.release_per_node = True
    flower_app.SHARE_CORES = share


COMPARE = {
    "hold": {"whole round held": lambda: _hold(False), "per passive": lambda: _hold(True)},
    "threads": {"torch's threads": lambda: _threads(False), "cores shared": lambda: _threads(True)},
}


def _run(views: int, epochs: int, k: int) -> dict:
    t = time.monotonic()
    sim = simulate_strips(views, epochs, k)
    return {
        "total_s": time.monotonic() - t,
        "epoch_s": statistics.median(h["train_time"] for h in sim["history"]),
        "train_s": sum(h["train_time"] for h in sim["history"]),
        "accuracy": sim["final"]["accuracy"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--compare", choices=sorted(COMPARE), default="hold")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--passives", default="2,4", help="comma-separated counts of passives")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch threads before each run (0: torch's default)")
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    import torch

    threads = a.threads or torch.get_num_threads()
    counts = [int(c) for c in a.passives.split(",")]
    variants = COMPARE[a.compare]
    first, second = list(variants)
    runs = []
    for passives in counts:
        for pair in range(a.pairs):
            for variant in [first, second] if pair % 2 == 0 else [second, first]:
                variants[variant]()
                torch.set_num_threads(threads)
                timed = _run(passives + 1, a.epochs, a.k)
                runs.append({"passives": passives, "pair": pair, "variant": variant, **timed})
                print(runs[-1], flush=True)
    _threads(True)  # the defaults
    rows = []
    for passives in counts:
        row: dict = {"passives": passives}
        for variant in variants:
            mine = [r for r in runs if r["passives"] == passives and r["variant"] == variant]
            row[variant] = {key: statistics.median(r[key] for r in mine) for key in ("epoch_s", "train_s", "total_s")}
            row[variant]["accuracy"] = sorted({r["accuracy"] for r in mine})
        row["ratio_epoch"] = row[second]["epoch_s"] / row[first]["epoch_s"]
        row["ratio_train"] = row[second]["train_s"] / row[first]["train_s"]
        rows.append(row)
    command = f"python benchmarks/simulate_hold_pairs.py --compare {a.compare} --pairs {a.pairs}"
    command += f" --passives {a.passives} --epochs {a.epochs} --k {a.k}"
    command += f" --threads {a.threads}" if a.threads else ""
    rep = {
        "benchmark": f"simulation, {first} vs {second}",
        "dataset": "mnist5k",
        "method": "apfed-c",
        "epochs": a.epochs,
        "k": a.k,
        "pairs": a.pairs,
        "threads_before_each_run": threads,
        "runs": runs,
        "rows": rows,
        "command": command,
    }
    md = [
        f"# Flower simulation: {first} against {second}",
        "",
        f"mnist5k strips, active strip 0, APFed-C, default preset, {a.epochs} epochs, K = {a.k} pipelined, "
        f"{a.pairs} alternating pairs per row (medians); torch threads set to {threads} before each run. Epoch: median "
        "epoch of a run, clocked in the training loop; training: the sum of its epochs; run: the whole simulate() "
        "call, Ray's start included.",
        "",
        f"| passives | epoch, {first} (s) | epoch, {second} (s) | ratio | training, {first} (s) "
        f"| training, {second} (s) | ratio | run, {first} (s) | run, {second} (s) | accuracy (both) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f, s = r[first], r[second]
        acc = sorted(set(f["accuracy"]) | set(s["accuracy"]))
        md.append(
            f"| {r['passives']} | {f['epoch_s']:.2f} | {s['epoch_s']:.2f} | {r['ratio_epoch']:.2f} | "
            f"{f['train_s']:.1f} | {s['train_s']:.1f} | {r['ratio_train']:.2f} | {f['total_s']:.0f} | "
            f"{s['total_s']:.0f} | {', '.join(f'{x:.2f}' for x in acc)} |"
        )
    tag = "per-node" if a.compare == "hold" else "share-cores"
    tag += f"-threads{a.threads}" if a.threads else ""
    write_benchmark(Path(a.out) / f"{datetime.date.today()}-simulate-{tag}-cpu", rep, md)


if __name__ == "__main__":
    main()
