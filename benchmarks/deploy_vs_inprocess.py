"""Loopback deployment (TLS + node auth) against in-process, same seed, K, pipelining and epochs, in one run.

mnist5k, 2 views (active top), 1 passive, APFed-C, default preset. For each variant (K, pipelining, torch threads
per deployed process) it trains in-process and over the deployment, and reports test accuracy, the median epoch
time (training plus round trips, measured inside ActiveClient.fit; the median skips the first epoch's start-up),
the time spent waiting on the passives, and messages and bytes per epoch per passive.

Usage: python benchmarks/deploy_vs_inprocess.py [--epochs 5] [--variant K:pipeline:threads ...]
  e.g. --variant 32:off:0 --variant 16:on:1   (threads 0: all cores, torch's default)
"""

import argparse
import datetime
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from apfed.bench import load_deploy
from apfed.config import make_config
from apfed.data import load_bundled
from apfed.report import write_benchmark
from apfed.runner import run


def row(transport: str, acc: float, hist: list[dict], wire: dict, epochs: int) -> dict:
    return {
        "transport": transport,
        "test_accuracy": acc,
        "epoch_s_median": float(np.median([h["train_time"] for h in hist])),
        "epoch_s": [h["train_time"] for h in hist],
        "exchange_s": [h.get("exchange_time") for h in hist],
        "messages_per_epoch": wire["messages"] / epochs,
        "mb_per_epoch": wire["bytes"] / epochs / 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--variant", action="append", help="K:on|off:threads (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    variants = a.variant or ["16:on:1", "8:on:1", "32:off:0"]
    deploy = load_deploy()
    ds = load_bundled("mnist5k")
    results = []
    for v in variants:
        k, pipe, threads = v.split(":")
        k, pipe, threads = int(k), pipe == "on", int(threads)
        cfg = make_config("default", method="apfed-c", epochs=a.epochs, batches_per_round=k, pipeline=pipe, seed=a.seed)
        local = run(ds, 0, cfg)
        with tempfile.TemporaryDirectory() as tmp:
            dep = deploy.deploy(
                Path(tmp),
                "apfed-c",
                "mnist5k",
                "top",
                a.epochs,
                k,
                a.seed,
                timeout=3600,
                pipeline=pipe,
                threads=threads or os.cpu_count(),
            )
        rows = [
            row("in-process", local.final["accuracy"], local.history, local.wire, a.epochs),
            row("deployment (TLS + node auth)", dep["final"]["accuracy"], dep["history"], dep["wire"], a.epochs),
        ]
        results.append(
            {
                "k": k,
                "pipeline": pipe,
                "threads_per_deployed_process": threads or f"{os.cpu_count()} (all)",
                "rows": rows,
                "epoch_time_ratio": rows[1]["epoch_s_median"] / rows[0]["epoch_s_median"],
                "accuracy_delta": rows[1]["test_accuracy"] - rows[0]["test_accuracy"],
                "deployment_timing": dep["timing"],
            }
        )
        print(json.dumps(results[-1]["rows"]), flush=True)
    rep = {
        "benchmark": "deployment vs in-process",
        "dataset": "mnist5k",
        "views": 2,
        "passives": 1,
        "method": "apfed-c",
        "epochs": a.epochs,
        "seed": a.seed,
        "variants": results,
        "command": "python benchmarks/deploy_vs_inprocess.py --epochs "
        + str(a.epochs)
        + "".join(f" --variant {v}" for v in variants),
    }
    prefix = Path(a.out) / f"{datetime.date.today()}-deploy-vs-inprocess-cpu"
    md = [
        "# Loopback deployment vs in-process",
        "",
        f"mnist5k, 2 views (active top), 1 passive, APFed-C, default preset, {a.epochs} epochs, same seed. Epoch time "
        "is measured inside the training loop (compute plus round trips); the median over epochs skips the first "
        "epoch's start-up. In-process always runs with torch's default threads (all cores); 'threads' is the torch "
        "thread count of each deployed process (both parties share this host's cores, as separate machines would "
        "not). Messages count both directions, per passive.",
        "",
        "| K | pipelined | threads | transport | test accuracy (%) | median epoch (s) | waiting on passive (s) "
        "| messages / epoch | MB / epoch | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for x in r["rows"]:
            wait = np.median([e for e in x["exchange_s"] if e is not None])
            ratio = f"**{r['epoch_time_ratio']:.2f}**" if x["transport"] != "in-process" else ""
            md.append(
                f"| {r['k']} | {'yes' if r['pipeline'] else 'no'} | {r['threads_per_deployed_process']} | "
                f"{x['transport']} | {x['test_accuracy']:.2f} | {x['epoch_s_median']:.2f} | {wait:.2f} | "
                f"{x['messages_per_epoch']:.1f} | {x['mb_per_epoch']:.2f} | {ratio} |"
            )
    md += [
        "",
        "Ratio: deployment / in-process median epoch time (goal ≤ 2 at the default K). Accuracy deltas "
        "(deployment − in-process): "
        + ", ".join(f"K={r['k']}{' pipelined' if r['pipeline'] else ''}: {r['accuracy_delta']:+.2f}" for r in results)
        + " (goal within ±0.5).",
    ]
    write_benchmark(prefix, rep, md)


if __name__ == "__main__":
    main()
