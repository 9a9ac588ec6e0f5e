"""Flower simulation engine against in-process with 1, 2 and 4 passives, same seed, K and epochs, in one run.

mnist5k cut into 2, 3 and 5 strips (1, 2, 4 passives), active strip 0, APFed-C, default preset.
Usage: python benchmarks/simulate_vs_inprocess.py [--epochs 3] [--k 16] [--no-pipeline] [--device cpu|cuda]
[--out benchmarks/results]
"""

import argparse
import datetime
import time
from pathlib import Path

import numpy as np

from apfed.config import make_config
from apfed.data import load_bundled
from apfed.report import write_benchmark
from apfed.runner import run
from clients.flower_app import RunSettings, simulate


def simulate_strips(views: int, epochs: int, k: int, pipeline: bool = True, device: str = "cpu") -> dict:
    """APFed-C over the Flower simulation engine on mnist5k cut into ``views`` strips, active strip 0, default
    preset: the run's summary (``clients.flower_app.simulate``)."""
    settings = RunSettings(
        dataset="mnist5k",
        views=views,
        active="0",
        method="apfed-c",
        epochs=epochs,
        batches_per_round=k,
        pipeline=pipeline,
        device=device,
    )
    return simulate(settings, views - 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    rows = []
    for views in (2, 3, 5):
        ds = load_bundled("mnist5k", views)
        local = run(
            ds,
            0,
            make_config(
                "default",
                method="apfed-c",
                epochs=a.epochs,
                batches_per_round=a.k,
                pipeline=a.pipeline,
                device=a.device,
            ),
        )
        t = time.monotonic()
        sim = simulate_strips(views, a.epochs, a.k, a.pipeline, a.device)
        sim_total = time.monotonic() - t
        local_epoch = float(np.median([h["train_time"] for h in local.history]))
        sim_epoch = float(np.median([h["train_time"] for h in sim["history"]]))
        rows.append(
            {
                "passives": views - 1,
                "inprocess_accuracy": local.final["accuracy"],
                "simulation_accuracy": sim["final"]["accuracy"],
                "inprocess_epoch_s": local_epoch,
                "simulation_epoch_s": sim_epoch,
                "ratio": sim_epoch / local_epoch,
                "simulation_total_s": sim_total,
                "messages_per_epoch": sim["wire"]["messages"] / a.epochs,
                "mb_per_epoch": sim["wire"]["bytes"] / a.epochs / 1e6,
            }
        )
        print(rows[-1], flush=True)
    rep = {
        "benchmark": "simulation vs in-process",
        "dataset": "mnist5k",
        "method": "apfed-c",
        "epochs": a.epochs,
        "k": a.k,
        "pipeline": a.pipeline,
        "device": a.device,
        "rows": rows,
        "command": f"python benchmarks/simulate_vs_inprocess.py --epochs {a.epochs} --k {a.k}"
        + ("" if a.pipeline else " --no-pipeline")
        + ("" if a.device == "cpu" else f" --device {a.device}"),
    }
    tag = "cpu" if a.device == "cpu" else "gpu"
    k_tag = "" if (a.k, a.pipeline) == (16, True) else f"-k{a.k}{'' if a.pipeline else '-unpipelined'}"
    prefix = Path(a.out) / f"{datetime.date.today()}-simulate-vs-inprocess-{tag}{k_tag}"
    md = [
        "# Flower simulation engine vs in-process",
        "",
        f"mnist5k strips, active strip 0, APFed-C, default preset, {a.epochs} epoch(s), K = {a.k}"
        f"{' pipelined' if a.pipeline else ''}, same seed, device {a.device}. "
        "Epoch time is measured inside the training loop; the simulation's total also counts Ray's start.",
        "",
        "| passives | accuracy in-process | accuracy simulation | epoch in-process (s) | epoch simulation (s) | ratio "
        "| simulation total (s) | messages / epoch | MB / epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['passives']} | {r['inprocess_accuracy']:.2f} | {r['simulation_accuracy']:.2f} | "
            f"{r['inprocess_epoch_s']:.2f} | {r['simulation_epoch_s']:.2f} | {r['ratio']:.2f} | "
            f"{r['simulation_total_s']:.0f} | {r['messages_per_epoch']:.0f} | {r['mb_per_epoch']:.2f} |"
        )
    write_benchmark(prefix, rep, md)


if __name__ == "__main__":
    main()
