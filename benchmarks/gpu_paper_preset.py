"""The paper preset on a GPU: 300 epochs of APFed-C (and local) on mnist5k, 2 views, active top, timed whole
(training plus the per-epoch test evaluation), against the reference's 99 s (REFERENCE.md §2).

Variants: eager steps, CUDA-graph steps (the default on a GPU), CUDA graphs plus TF32 matrix multiplies.
Usage: python benchmarks/gpu_paper_preset.py --seeds 3 [--out PREFIX | --out DIR]: the report is PREFIX.{json,md};
an existing folder DIR gets DIR/DATE-gpu-paper-preset-CARD.{json,md} (CARD: h100, h200, ... from the GPU's name; the
default DIR is benchmarks/results)."""

from __future__ import annotations

import argparse
import statistics
from datetime import date
from pathlib import Path

from apfed.config import make_config
from apfed.data.bundled import load_bundled
from apfed.report import write_benchmark
from apfed.runner import run

REFERENCE_S = {"apfed-c": 99.0, "local": 64.0}
REFERENCE_ACC = {"apfed-c": 91.51, "local": 91.05}
VARIANTS = {
    "eager": dict(cuda_graphs=False),
    "cuda graphs": dict(cuda_graphs=True),
    "cuda graphs + tf32": dict(cuda_graphs=True, tf32=True),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--methods", default="apfed-c,local")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--eager-seeds", type=int, default=1, help="seeds for the (slow) eager variant")
    ap.add_argument("--out", default="benchmarks/results", help="a report prefix, or an existing folder")
    a = ap.parse_args()
    ds = load_bundled("mnist5k", 2)
    rows = []
    # tf32 is process-wide once on: the variants run in this order, fp32 ones first
    for variant in a.variants.split(","):
        for method in a.methods.split(","):
            seeds = a.eager_seeds if variant == "eager" else a.seeds
            runs = []
            for seed in range(seeds):
                options = dict(method=method, seed=seed, epochs=a.epochs, device=a.device, **VARIANTS[variant])
                cfg = make_config("paper", **options)
                r = run(ds, 0, cfg)
                runs.append({"seed": seed, "accuracy": r.accuracy, "seconds": r.seconds, "epoch_s": r.epoch_seconds})
                print(f"{variant} {method} seed {seed}: {r.accuracy:.2f} % in {r.seconds:.1f} s", flush=True)
            secs = statistics.median(x["seconds"] for x in runs)
            accs = [x["accuracy"] for x in runs]
            rows.append(
                {
                    "variant": variant,
                    "method": method,
                    "seeds": seeds,
                    "accuracy_mean": statistics.mean(accs),
                    "accuracy_std": statistics.pstdev(accs),
                    "run_seconds_median": secs,
                    "median_epoch_seconds": statistics.median(x["epoch_s"] for x in runs),
                    "reference_seconds": REFERENCE_S[method],
                    "speedup": REFERENCE_S[method] / secs,
                    "runs": runs,
                }
            )
    md = [
        f"# Paper preset on one GPU: {a.epochs} epochs, mnist5k, 2 views, active top",
        "",
        "Whole run time (setup, training, the per-epoch test evaluation) of `apfed.runner.run`, median over seeds;"
        " accuracy is the mean over the last 10 epochs, mean ± std over seeds. Reference: REFERENCE.md §2"
        " (99 s APFed-C, 64 s local on one H200; accuracy 91.51 ± 0.38 and 91.05 ± 0.14).",
        "",
        "| variant | method | seeds | accuracy | reference accuracy | run (s) | epoch (s) | reference (s) | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['variant']} | {r['method']} | {r['seeds']} | {r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f} | "
            f"{REFERENCE_ACC[r['method']]:.2f} | {r['run_seconds_median']:.1f} | {r['median_epoch_seconds']:.4f} | "
            f"{r['reference_seconds']:.0f} | {r['speedup']:.2f}× |"
        )
    report = {
        "benchmark": "GPU paper preset",
        "epochs": a.epochs,
        "rows": rows,
        "command": f"python benchmarks/gpu_paper_preset.py --seeds {a.seeds} --epochs {a.epochs}"
        + (f" --variants '{a.variants}'" if a.variants != ",".join(VARIANTS) else "")
        + (f" --methods {a.methods}" if a.methods != "apfed-c,local" else ""),
    }
    out = Path(a.out)
    if out.is_dir() or a.out == "benchmarks/results":  # the default folder, made by write_benchmark if need be
        out = out / f"{date.today()}-gpu-paper-preset-{_card(a.device)}"
    write_benchmark(out, report, md)


def _card(device: str) -> str:
    """A short name of the GPU for the report's file name: 'h100' for an 'NVIDIA H100 80GB HBM3'; 'cpu' off a GPU."""
    import re

    import torch

    if not device.startswith("cuda"):
        return "cpu"
    name = torch.cuda.get_device_name(torch.device(device))
    found = re.search(r"\b([A-Z]+\d+[A-Z]*)\b", name.removeprefix("NVIDIA "))
    return found.group(1).lower() if found else "gpu"


if __name__ == "__main__":
    main()
