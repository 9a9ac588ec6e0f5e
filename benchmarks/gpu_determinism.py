"""Does the same seed give the same model on a GPU? Each method is trained twice with one seed, with and without
``--set deterministic=true``; the report says whether the two runs' per-epoch losses and accuracies and their
standalone models' test probabilities are equal bit for bit, and what the deterministic kernels cost per epoch.
The deterministic runs come first: cuBLAS reads its workspace setting when the process first multiplies matrices.
Writes benchmarks/results/<date>-gpu-determinism-<machine>.{json,md}.
Usage: python benchmarks/gpu_determinism.py [--datasets mnist5k handwritten] [--epochs 5] [--device cuda]
"""

import argparse
import datetime
from pathlib import Path

import numpy as np

from apfed.api import load_dataset
from apfed.config import METHODS, make_config
from apfed.report import write_benchmark
from apfed.runner import run

CLOCKS = ("train_time", "exchange_time")


def trained(ds, active: int, method: str, epochs: int, device: str, deterministic: bool) -> dict:
    cfg = make_config("default", method=method, epochs=epochs, seed=0, device=device, deterministic=deterministic)
    r = run(ds, active, cfg)
    X = ds.views[active].X[np.asarray(ds.test_idx)]
    curve = [{k: v for k, v in row.items() if k not in CLOCKS} for row in r.history]
    proba = r.model.predict_proba(X) if r.model is not None else None
    return {"curve": curve, "proba": proba, "epoch_s": float(np.median([h["train_time"] for h in r.history[1:]]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["mnist5k", "handwritten"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    rows = []
    for deterministic in (True, False):
        for name in a.datasets:
            ds, active = load_dataset(name, log=lambda *_: None)
            for method in a.methods:
                one, two = (trained(ds, active, method, a.epochs, a.device, deterministic) for _ in range(2))
                same_proba = one["proba"] is None or bool(np.array_equal(one["proba"], two["proba"]))
                diff = 0.0 if one["proba"] is None else float(np.abs(one["proba"] - two["proba"]).max())
                row = {
                    "dataset": name,
                    "method": method,
                    "deterministic": deterministic,
                    "same_curve": one["curve"] == two["curve"],
                    "same_probabilities": same_proba,
                    "max_probability_difference": diff,
                    "epoch_s": [one["epoch_s"], two["epoch_s"]],
                }
                rows.append(row)
                print(row, flush=True)
    machine = "h200" if a.device.startswith("cuda") else "cpu"
    command = (
        f"python benchmarks/gpu_determinism.py --datasets {' '.join(a.datasets)} --methods {' '.join(a.methods)}"
        f" --epochs {a.epochs} --device {a.device}"
    )
    rep = {"benchmark": "gpu determinism", "epochs": a.epochs, "results": rows, "command": command}
    table = [
        "| dataset | method | default: same run twice | max. probability difference | `deterministic=true`: same run"
        " twice | epoch (s), default · deterministic |",
        "|---|---|---|---|---|---|",
    ]
    for name in a.datasets:
        for method in a.methods:
            fast, det = (
                next(r for r in rows if (r["dataset"], r["method"], r["deterministic"]) == (name, method, d))
                for d in (False, True)
            )

            def verdict(r: dict) -> str:
                return "bit for bit" if r["same_curve"] and r["same_probabilities"] else "**differs**"

            table.append(
                f"| {name} | {method} | {verdict(fast)} | {fast['max_probability_difference']:.1e} | {verdict(det)} |"
                f" {np.mean(fast['epoch_s']):.3f} · {np.mean(det['epoch_s']):.3f} |"
            )
    md = [
        f"# The same seed twice on {a.device}: default kernels and `--set deterministic=true`",
        "",
        f"Each method trained twice with seed 0, default recipe, {a.epochs} epochs, in one process. Same run twice:"
        " every epoch's losses and test accuracies, and the standalone model's probabilities on the test rows, equal"
        " bit for bit. Max. probability difference: of the default runs' models (tvfl and centralized: the standalone"
        " model is none, the curves are compared). Epoch: median of epochs 2 on, mean of the two runs.",
        "",
        *table,
    ]
    write_benchmark(Path(a.out) / f"{datetime.date.today()}-gpu-determinism-{machine}", rep, md)


if __name__ == "__main__":
    main()
