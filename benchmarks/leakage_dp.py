"""What each party could infer from a run's messages (`apfed leakage`), without and with DP noise on what crosses:
the attacks of `apfed.attacks` on every method that exchanges messages, and each method's test accuracy beside them.

Usage: python benchmarks/leakage_dp.py [--dataset handwritten] [--methods apfed-r,apfed-c,apfed-kd,tvfl]
       [--noise 0,1] [--epochs 60] [--device cpu]"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

import apfed
from apfed.config import make_config
from apfed.leakage import audit
from apfed.leakage_report import leakage_markdown_table
from apfed.report import write_benchmark


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="handwritten")
    ap.add_argument("--methods", default="apfed-r,apfed-c,apfed-kd,tvfl")
    ap.add_argument("--noise", default="0,1")
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    ds, active = apfed.load_dataset(a.dataset, log=lambda _: None)
    reports, md = [], []
    for noise in [float(s) for s in a.noise.split(",")]:
        runs = []
        for method in a.methods.split(","):
            dp = {"dp_clip": a.clip, "dp_noise": noise} if noise > 0 else {}
            cfg = make_config("default", method=method, epochs=a.epochs, device=a.device, **dp)
            runs.append(audit(ds, active, cfg))
            print(method, noise, runs[-1]["test"].get("accuracy"), flush=True)
        report = {
            "dataset": ds.name,
            "active_view": ds.views[active].name,
            "command": "",
            "known_labels_per_class": 4,
            "known_rows": 0.1,
            "dp": {"clip": a.clip if noise > 0 else 0.0, "noise": noise},
            "epochs": a.epochs,
            "seed": 0,
            "runs": runs,
        }
        reports.append(report)
        md += [f"## {'no DP noise' if noise == 0 else f'DP noise {noise:g} (clip {a.clip:g})'}", ""]
        md += leakage_markdown_table(report)
    cmd = (
        f"python benchmarks/leakage_dp.py --dataset {a.dataset} --methods {a.methods} --noise {a.noise}"
        f" --clip {a.clip:g} --epochs {a.epochs} --device {a.device}" + (f" --tag={a.tag}" if a.tag else "")
    )
    device = "gpu" if a.device.startswith("cuda") else "cpu"
    out = Path(f"benchmarks/results/{date.today()}-leakage-{a.dataset}-{device}{a.tag}")
    title = [f"# What each party could infer from a run's messages: {a.dataset}", "", f"`{cmd}`", ""]
    write_benchmark(out, {"benchmark": "leakage", "command": cmd, "reports": reports}, title + md)


if __name__ == "__main__":
    main()
