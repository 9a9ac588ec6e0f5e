"""Accuracy when the passives hold only some of the active party's rows (a partial overlap).

For each overlap (the share of the active party's training rows that the passives also hold, drawn at random;
the test rows are held by every party), trains:
- ``local`` on every labelled row of the active party (no passive);
- the APFed methods with their rows no passive holds in the task loss (``unmatched_rows=train``, the default);
- ``apfed-c`` on the matched rows alone (``unmatched_rows=drop``: what apfed did before, and what a VFL framework
  that trains on the intersection only does);
- ``tvfl`` (every party, matched rows only: it needs every party's data at training and at prediction).
Reports the mean ± std of the last-10-epoch test accuracy over seeds.
Writes benchmarks/results/<date>-partial-overlap-<dataset>-<machine>.{json,md}.
Usage: python benchmarks/partial_overlap.py [--dataset handwritten] [--overlaps 0.1 0.25 0.5 1] [--seeds 3]
"""

import argparse
import dataclasses
import datetime
import time
from pathlib import Path

import numpy as np

from apfed.api import load_dataset
from apfed.config import make_config
from apfed.data.views import partial_overlap
from apfed.report import write_benchmark
from apfed.runner import run

SETTINGS = [  # (label, method, unmatched_rows)
    ("local (every labelled row)", "local", "train"),
    ("apfed-c", "apfed-c", "train"),
    ("apfed-kd", "apfed-kd", "train"),
    ("apfed-c, matched rows only", "apfed-c", "drop"),
    ("tvfl (all parties, matched rows)", "tvfl", "drop"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="handwritten")
    ap.add_argument("--views", type=int, default=None)
    ap.add_argument("--active", default=None)
    ap.add_argument("--overlaps", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    full, active = load_dataset(a.dataset, views=a.views, active=a.active, log=lambda *_: None)
    rows = []
    for overlap in a.overlaps:
        ds = partial_overlap(full, active, overlap, seed=0)
        for label, method, unmatched in SETTINGS:
            accs, t0 = [], time.perf_counter()
            for seed in range(a.seeds):
                cfg = make_config("default", method=method, epochs=a.epochs, seed=seed, device=a.device)
                accs.append(run(ds, active, dataclasses.replace(cfg, unmatched_rows=unmatched)).accuracy)
            row = {
                "overlap": overlap,
                "matched_train_rows": len(ds.train_idx),
                "unmatched_rows": len(ds.unmatched) if ds.unmatched else 0,
                "setting": label,
                "method": method,
                "unmatched_rows_setting": unmatched,
                "accuracy_mean": float(np.mean(accs)),
                "accuracy_std": float(np.std(accs)),
                "runs": accs,
                "seconds": time.perf_counter() - t0,
            }
            rows.append(row)
            print(row, flush=True)
    machine = "h200" if a.device.startswith("cuda") else "cpu"
    name = full.name if a.views is None else f"{full.name}{a.views}"
    command = (
        f"python benchmarks/partial_overlap.py --dataset {a.dataset}"
        + (f" --views {a.views}" if a.views else "")
        + (f" --active {a.active}" if a.active else "")
        + f" --overlaps {' '.join(map(str, a.overlaps))} --seeds {a.seeds} --epochs {a.epochs} --device {a.device}"
    )
    rep = {"benchmark": "partial overlap", "dataset": name, "active": full.views[active].name, "epochs": a.epochs}
    rep.update(seeds=a.seeds, results=rows, command=command)
    header = "| setting | " + " | ".join(f"overlap {o:.0%}" for o in a.overlaps) + " |"
    table = [header, "|---" * (len(a.overlaps) + 1) + "|"]
    for label, _, _ in SETTINGS:
        cells = [r for r in rows if r["setting"] == label]
        table.append(
            f"| {label} | " + " | ".join(f"{r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f}" for r in cells) + " |"
        )
    counts = ", ".join(
        f"{r['overlap']:.0%}: {r['matched_train_rows']} matched + {r['unmatched_rows']}"
        for r in rows
        if r["setting"] == SETTINGS[0][0]
    )
    md = [
        f"# Partial overlap: {name}, active view {full.views[active].name}, default recipe, {a.epochs} epochs,"
        f" {a.seeds} seeds",
        "",
        "Overlap: the share of the active party's training rows that the passives also hold (drawn at random; the"
        " test rows are held by every party, so every setting is tested on the same rows). Training rows, matched +"
        f" the active party's alone: {counts}. Accuracy: test accuracy in %, mean of the last 10 epochs, mean ± std"
        " over seeds.",
        "",
        *table,
    ]
    write_benchmark(Path(a.out) / f"{datetime.date.today()}-partial-overlap-{name}-{machine}", rep, md)


if __name__ == "__main__":
    main()
