"""Loopback deployment (TLS + node auth) against in-process, same seed, K and epochs, in one run.

mnist5k, 2 views (active top), 1 passive, APFed-C, default preset. Reports test accuracy, median epoch time
(training plus the round trips, measured inside ActiveClient.fit), messages and bytes per epoch per party.
Usage: python benchmarks/deploy_vs_inprocess.py [--epochs 2] [--k 32] [--out benchmarks/results]
"""

import argparse
import datetime
import importlib.util
import json
import tempfile
from pathlib import Path

import numpy as np

from apfed.config import make_config
from apfed.data import load_bundled
from apfed.report import machine
from apfed.runner import run

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    spec = importlib.util.spec_from_file_location("deploy", ROOT / "examples" / "deploy-local" / "deploy.py")
    deploy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(deploy)
    ds = load_bundled("mnist5k")
    cfg = make_config("default", method="apfed-c", epochs=a.epochs, batches_per_round=a.k, seed=a.seed)
    local = run(ds, 0, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        dep = deploy.deploy(Path(tmp), "apfed-c", "mnist5k", "top", a.epochs, a.k, a.seed, timeout=1800)
    rows = []
    for name, acc, hist, wire in (
        ("in-process", local.final["accuracy"], local.history, local.wire),
        ("deployment (TLS + node auth)", dep["final"]["accuracy"], dep["history"], dep["wire"]),
    ):
        rows.append(
            {
                "transport": name,
                "test_accuracy": acc,
                "epoch_s_median": float(np.median([h["train_time"] for h in hist])),
                "epoch_s": [h["train_time"] for h in hist],
                "messages_per_epoch": wire["messages"] / a.epochs,
                "mb_per_epoch": wire["bytes"] / a.epochs / 1e6,
            }
        )
    ratio = rows[1]["epoch_s_median"] / rows[0]["epoch_s_median"]
    rep = {
        "benchmark": "deployment vs in-process",
        "dataset": "mnist5k",
        "views": 2,
        "passives": 1,
        "method": "apfed-c",
        "epochs": a.epochs,
        "k": a.k,
        "seed": a.seed,
        "rows": rows,
        "epoch_time_ratio": ratio,
        "accuracy_delta": rows[1]["test_accuracy"] - rows[0]["test_accuracy"],
        "machine": machine(),
        "deployment_timing": dep["timing"],
        "command": f"python benchmarks/deploy_vs_inprocess.py --epochs {a.epochs} --k {a.k}",
    }
    prefix = Path(a.out) / f"{datetime.date.today()}-deploy-vs-inprocess-cpu"
    prefix.with_suffix(".json").write_text(json.dumps(rep, indent=1))
    md = [
        "# Loopback deployment vs in-process",
        "",
        f"mnist5k, 2 views (active top), 1 passive, APFed-C, default preset, {a.epochs} epochs, K = {a.k} minibatches "
        "per round, same seed. Epoch time is measured inside the training loop (compute plus round trips).",
        "",
        "| transport | test accuracy (%) | median epoch (s) | messages / epoch (both directions) | MB / epoch |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['transport']} | {r['test_accuracy']:.2f} | {r['epoch_s_median']:.2f} | "
            f"{r['messages_per_epoch']:.0f} | {r['mb_per_epoch']:.2f} |"
        )
    md += [
        "",
        f"Epoch-time ratio deployment / in-process: **{ratio:.2f}** (goal ≤ 2). Accuracy delta: "
        f"{rep['accuracy_delta']:+.2f} points (goal within ±0.5).",
        "",
        f"Machine: {json.dumps(rep['machine'])}. Reproduce: `{rep['command']}`.",
        "",
    ]
    prefix.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
