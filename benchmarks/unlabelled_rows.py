"""Accuracy when only some training rows have a label, and the passives' losses also train on the others.

For each labelled share (the share of the training rows that keep their label, stratified and seeded; the test
rows keep theirs), trains, paired by seed:
- ``local`` on the labelled rows (no passive, nothing to learn from a row with no label), and again for as many
  optimizer steps as apfed-c takes over every row (more epochs): the control for the steps alone;
- ``apfed-c`` and ``apfed-kd`` with the rows with no label in the passives' losses (and apfed-kd's distillation):
  ``unlabelled_rows=train``, the default;
- the same two on the labelled rows alone (``unlabelled_rows=drop``: what apfed did before, and what a VFL
  framework that trains its task loss only does);
- ``tvfl`` (every party, labelled rows).
Reports the mean ± std of the last-10-epoch test accuracy (a regression's R², e.g. ``--dataset diabetes``) over
seeds, and each setting's gain over local with the same seed. Writes
benchmarks/results/<date>-unlabelled-rows-<dataset>-<machine>.{json,md}.
Usage: python benchmarks/unlabelled_rows.py [--dataset handwritten] [--shares 0.05 0.1 0.25 1] [--seeds 3]
       python benchmarks/unlabelled_rows.py --dataset D --device cuda --merge A.json B.json  (one report of runs made
       apart, e.g. two share lists at once on one GPU)
"""

import argparse
import dataclasses
import datetime
import json
import math
import time
from pathlib import Path

import numpy as np

from apfed.api import load_dataset
from apfed.config import make_config
from apfed.data.views import hide_labels
from apfed.report import write_benchmark
from apfed.runner import run

SETTINGS = [  # (label, method, unlabelled_rows)
    ("local", "local", "train"),
    ("local, as many steps as apfed-c", "local", "steps"),
    ("apfed-c", "apfed-c", "train"),
    ("apfed-c, labelled rows only", "apfed-c", "drop"),
    ("apfed-kd", "apfed-kd", "train"),
    ("apfed-kd, labelled rows only", "apfed-kd", "drop"),
    ("tvfl (all parties)", "tvfl", "train"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="handwritten")
    ap.add_argument("--views", type=int, default=None)
    ap.add_argument("--active", default=None)
    ap.add_argument("--shares", type=float, nargs="+", default=[0.05, 0.1, 0.25, 1.0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--merge", nargs="+", default=None, help="write one report of these reports' rows instead")
    a = ap.parse_args()
    full, active = load_dataset(a.dataset, views=a.views, active=a.active, log=lambda *_: None)
    regression = full.labels.dtype.kind == "f"
    digits = 4 if regression else 2
    rows = []
    if a.merge:  # runs made apart (on one machine, at the same time): one table
        rows = [r for f in a.merge for r in json.loads(Path(f).read_text())["results"]]
        rows.sort(key=lambda r: r["labelled_share"])
        a.shares = sorted({r["labelled_share"] for r in rows})
    for share in [] if a.merge else a.shares:
        ds = hide_labels(full, share, seed=0)
        local = []
        for label, method, unlabelled in SETTINGS:
            accs, t0 = [], time.perf_counter()
            for seed in range(a.seeds):
                cfg = make_config("default", method=method, epochs=a.epochs, seed=seed, device=a.device)
                if unlabelled == "steps":  # an epoch of local takes ceil(labelled / batch) steps, of apfed-c more
                    every = len(ds.train_idx) + (0 if ds.unlabelled is None else len(ds.unlabelled))
                    steps = math.ceil(every / cfg.batch_size) / math.ceil(len(ds.train_idx) / cfg.batch_size)
                    cfg, unlabelled_setting = dataclasses.replace(cfg, epochs=round(a.epochs * steps)), "train"
                else:
                    unlabelled_setting = unlabelled
                accs.append(run(ds, active, dataclasses.replace(cfg, unlabelled_rows=unlabelled_setting)).accuracy)
            local = local or accs
            gains = [x - y for x, y in zip(accs, local, strict=True)]
            row = {
                "labelled_share": share,
                "labelled_train_rows": len(ds.train_idx),
                "unlabelled_rows": 0 if ds.unlabelled is None else len(ds.unlabelled),
                "setting": label,
                "method": method,
                "unlabelled_rows_setting": unlabelled,
                "accuracy_mean": float(np.mean(accs)),
                "accuracy_std": float(np.std(accs)),
                "vs_local_mean": float(np.mean(gains)),
                "vs_local_std": float(np.std(gains)),
                "vs_local_wins": int(sum(g > 0 for g in gains)),
                "runs": accs,
                "seconds": time.perf_counter() - t0,
            }
            rows.append(row)
            print(row, flush=True)
    machine = "h200" if a.device.startswith("cuda") else "cpu"
    if a.merge:
        a.seeds = len(rows[0]["runs"])
    name = full.name if a.views is None else f"{full.name}{a.views}"
    suffix = f"-{full.views[active].name}" if a.active else ""  # two strips' reports side by side
    command = (
        f"python benchmarks/unlabelled_rows.py --dataset {a.dataset}"
        + (f" --views {a.views}" if a.views else "")
        + (f" --active {a.active}" if a.active else "")
        + f" --shares {' '.join(map(str, a.shares))} --seeds {a.seeds} --epochs {a.epochs} --device {a.device}"
    )
    if a.merge:
        parts = [json.loads(Path(f).read_text())["command"] for f in a.merge]
        command = " & ".join(parts) + f"; wait; then the same with --merge and the {len(parts)} reports' JSON"
    rep = {"benchmark": "unlabelled rows", "dataset": name, "active": full.views[active].name, "epochs": a.epochs}
    rep.update(seeds=a.seeds, results=rows, command=command)
    if a.merge:  # the machine the runs ran on, not this one
        rep["machine"] = json.loads(Path(a.merge[0]).read_text())["machine"]
    header = "| setting | " + " | ".join(f"{s:.0%} labelled" for s in a.shares) + " |"
    table = [header, "|---" * (len(a.shares) + 1) + "|"]
    for label, _, _ in SETTINGS:
        cells = []
        for r in (r for r in rows if r["setting"] == label):
            gain = "" if label == "local" else f" ({r['vs_local_mean']:+.{digits}f}, {r['vs_local_wins']}/{a.seeds})"
            cells.append(f"{r['accuracy_mean']:.{digits}f} ± {r['accuracy_std']:.{digits}f}{gain}")
        table.append(f"| {label} | " + " | ".join(cells) + " |")
    counts = ", ".join(
        f"{r['labelled_share']:.0%}: {r['labelled_train_rows']} + {r['unlabelled_rows']}"
        for r in rows
        if r["setting"] == "local"
    )
    md = [
        f"# Rows with no label: {name}, active view {full.views[active].name}, default recipe, {a.epochs} epochs,"
        f" {a.seeds} seeds",
        "",
        "Labelled share: the share of the training rows that keep their label (stratified, seeded; the test rows"
        " keep theirs, so every setting is tested on the same rows). Training rows, labelled + with no label:"
        f" {counts}."
        f" {'R²: test R² (a regression; 1 is perfect)' if regression else 'Accuracy: test accuracy in %'}, mean of"
        " the last 10 epochs, mean ± std over seeds; in brackets the mean gain over local with the same seed, and in"
        " how many seeds the setting is ahead (`accuracy_mean` in the JSON holds the R² of a regression).",
        "",
        *table,
    ]
    write_benchmark(Path(a.out) / f"{datetime.date.today()}-unlabelled-rows-{name}{suffix}-{machine}", rep, md)


if __name__ == "__main__":
    main()
