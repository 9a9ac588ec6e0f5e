"""Whether conformal prediction (``--set conformal=C``) keeps its promise on rows the model never saw.

Each method is trained with validation rows (``validation=0.25``; half of them pick the epoch, the other half
calibrate the intervals or sets) on ``--seeds`` splits (seed 0 the data's own, seed s >= 1 a stratified split of its
own, as ``apfed evaluate --resplit``), for each coverage asked. Reports, over the runs, the share of test rows whose
interval or set held the truth (mean, and the lowest run), and the mean interval width (target units) or set size.
Writes benchmarks/results/<date>-conformal-<dataset>-<machine>.{json,md}.
Usage: python benchmarks/conformal.py [--dataset diabetes] [--methods local apfed-c apfed-kd] [--seeds 10]
       [--coverages 0.8 0.9 0.95] [--epochs 60]
       python benchmarks/conformal.py --dataset D --merge A.json B.json  (one report of runs made apart)
"""

import argparse
import datetime
import json
from pathlib import Path

import numpy as np

from apfed.api import load_dataset
from apfed.config import make_config
from apfed.data.splits import resplit
from apfed.report import write_benchmark
from apfed.runner import run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="diabetes")
    ap.add_argument("--active", default=None)
    ap.add_argument("--methods", nargs="+", default=["local", "apfed-c", "apfed-kd"])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--coverages", type=float, nargs="+", default=[0.8, 0.9, 0.95])
    ap.add_argument("--validation", type=float, default=0.25)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--merge", nargs="+", default=None, help="write one report of these reports' rows instead")
    a = ap.parse_args()
    ds, active = load_dataset(a.dataset, active=a.active, log=lambda *_: None)
    splits = [] if a.merge else [resplit(ds, s) if s else ds for s in range(a.seeds)]
    regression = ds.labels.dtype.kind == "f"
    size_key = "interval_width" if regression else "set_size"
    merged = [json.loads(Path(f).read_text()) for f in a.merge or []]
    rows = [r for m in merged for r in m["results"]]  # runs made apart (on one machine): one table
    for method in [] if a.merge else a.methods:
        for coverage in a.coverages:
            finals = []
            for seed, split in enumerate(splits):
                cfg = make_config(
                    "default", method=method, epochs=a.epochs, seed=seed, device=a.device, validation=a.validation,
                    conformal=coverage,
                )  # fmt: skip
                finals.append(run(split, active, cfg).final)
            held = [f["conformal_coverage"] for f in finals]
            row = {
                "method": method,
                "coverage_asked": coverage,
                "held_mean": float(np.mean(held)),
                "held_std": float(np.std(held)),
                "held_min": float(np.min(held)),
                "size_mean": float(np.mean([f[size_key] for f in finals])),
                "calibration_rows": int(np.mean([f.get("conformal_rows", 0) for f in finals])),
                "headline_mean": float(np.mean([f["r2" if regression else "accuracy"] for f in finals])),
                "finals": finals,
            }
            rows.append(row)
            print({k: v for k, v in row.items() if k != "finals"}, flush=True)
    machine = "h200" if a.device.startswith("cuda") else "cpu"
    view = ds.views[active].name
    command = (
        f"python benchmarks/conformal.py --dataset {a.dataset}"
        + (f" --active {a.active}" if a.active else "")
        + f" --methods {' '.join(a.methods)} --seeds {a.seeds} --coverages {' '.join(map(str, a.coverages))}"
        + f" --validation {a.validation} --epochs {a.epochs} --device {a.device}"
    )
    rep = {"benchmark": "conformal", "dataset": ds.name, "active": view, "epochs": a.epochs, "seeds": a.seeds}
    if merged:
        command = " & ".join(m["command"] for m in merged) + "; wait; then the same with --merge and their JSON"
        a.seeds, a.validation = merged[0]["seeds"], merged[0]["validation"]
    rep.update(validation=a.validation, results=rows, command=command)
    if merged:  # the machine the runs ran on, not this one
        rep["machine"] = merged[0]["machine"]
    size = "mean interval width (target units)" if regression else "mean set size (classes)"
    headline = "test R²" if regression else "test accuracy (%)"
    table = [
        f"| method | coverage asked | test rows held (%), mean ± std | lowest run | {size} | {headline} |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        table.append(
            f"| {r['method']} | {r['coverage_asked']:.0%} | {r['held_mean']:.1f} ± {r['held_std']:.1f} |"
            f" {r['held_min']:.1f} | {r['size_mean']:.{1 if regression else 2}f} |"
            f" {r['headline_mean']:.{4 if regression else 2}f} |"
        )
    md = [
        f"# Conformal prediction: {ds.name}, active view {view}, default recipe, {a.epochs} epochs, {a.seeds} splits",
        "",
        f"Validation rows: {a.validation:.0%} of the training rows, half of them picking the epoch and half"
        f" calibrating the {'intervals' if regression else 'sets of classes'} (`--set conformal=C`). Each seed s"
        f" tests its own split of the labelled rows ({len(ds.test_idx)} test rows; seed 0 the data's own). Held: the"
        " share of the test rows whose interval or set held the truth, mean ± std over the splits and the lowest.",
        "",
        *table,
    ]
    write_benchmark(Path(a.out) / f"{datetime.date.today()}-conformal-{ds.name}-{machine}", rep, md)


if __name__ == "__main__":
    main()
