"""Accuracy and wire cost of float16 payloads (embeddings and gradients on the wire) against float32.

Default recipe, mnist5k 2 views, active top. Usage:
python benchmarks/payload_precision.py --device cuda --seeds 3 [--methods apfed-c,apfed-kd] [--epochs 60]"""

from __future__ import annotations

import argparse
import statistics
from datetime import date
from pathlib import Path

from apfed.config import make_config
from apfed.data.bundled import load_bundled
from apfed.report import write_benchmark
from apfed.runner import run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--methods", default="apfed-c,apfed-kd")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    ds = load_bundled("mnist5k", 2)
    rows = []
    for method in a.methods.split(","):
        for payload in ("float32", "float16"):
            runs = []
            for seed in range(a.seeds):
                options = dict(method=method, seed=seed, epochs=a.epochs, device=a.device, payload=payload)
                cfg = make_config("default", **options)
                r = run(ds, 0, cfg)
                runs.append({"seed": seed, "accuracy": r.accuracy, "wire_bytes": r.wire["bytes"], "s": r.seconds})
                print(f"{method} {payload} seed {seed}: {r.accuracy:.2f}", flush=True)
            accs = [x["accuracy"] for x in runs]
            rows.append(
                {
                    "method": method,
                    "payload": payload,
                    "accuracy_mean": statistics.mean(accs),
                    "accuracy_std": statistics.pstdev(accs),
                    "mb_per_epoch": runs[0]["wire_bytes"] / a.epochs / 1e6,
                    "runs": runs,
                }
            )
    md = [
        f"# Payload precision: float16 against float32 on the wire ({a.epochs} epochs, default recipe)",
        "",
        "mnist5k, 2 views, active top; accuracy is the mean over the last 10 epochs, mean ± std over"
        f" {a.seeds} seeds. Wire: embeddings and gradients both ways, all messages, per epoch.",
        "",
        "| method | payload | accuracy | Δ vs float32 | MB per epoch |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        base = next(x for x in rows if x["method"] == r["method"] and x["payload"] == "float32")
        md.append(
            f"| {r['method']} | {r['payload']} | {r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f} | "
            f"{r['accuracy_mean'] - base['accuracy_mean']:+.2f} | {r['mb_per_epoch']:.2f} |"
        )
    tag = "h200" if a.device.startswith("cuda") else "cpu"
    out = Path(a.out or f"benchmarks/results/{date.today()}-payload-precision-{tag}")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = f"python benchmarks/payload_precision.py --device {a.device} --seeds {a.seeds} --epochs {a.epochs}"
    write_benchmark(out, {"benchmark": "payload precision", "rows": rows, "command": cmd}, md)


if __name__ == "__main__":
    main()
