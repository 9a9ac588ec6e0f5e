"""What `apfed drift` reads when nothing moved: each column's PSI on rows drawn like the training rows (the test rows
of a bundled set, split at random from the same data), against the chance level the command prints.

Usage: python benchmarks/drift_noise.py [--dataset handwritten] [--sizes 50,100,200,400]"""

from __future__ import annotations

import argparse
import statistics
from datetime import date
from pathlib import Path

import numpy as np

import apfed
from apfed.drift import MOVED, chance_level, compare, profile
from apfed.report import write_benchmark
from apfed.scoring import feature_groups


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="handwritten")
    ap.add_argument("--sizes", default="50,100,200,400")
    a = ap.parse_args()
    ds, active = apfed.load_dataset(a.dataset, log=lambda _: None)
    view = ds.views[active]
    groups = feature_groups(view.columns, view.encoding, int(np.prod(view.shape)))
    categorical = set(view.encoding.categories) if view.encoding else set()
    train = np.asarray(ds.train_idx)
    prof = profile(view.X[train], groups, categorical, len(train))
    test = np.asarray(ds.test_idx)
    rows = []
    for n in [int(s) for s in a.sizes.split(",")]:
        reads = []
        for start in range(0, len(test) - n + 1, n):  # disjoint draws of n test rows
            reads += [c["psi"] for c in compare(prof, view.X[test[start : start + n]])]
        rows.append(
            {
                "rows": n,
                "draws": (len(test) // n),
                "columns": len(groups),
                "median": statistics.median(reads),
                "mean": float(np.mean(reads)),
                "p90": float(np.percentile(reads, 90)),
                "max": max(reads),
                "moved_share": float(np.mean(np.asarray(reads) >= MOVED)),
                "chance_level": chance_level(n, len(train)),
            }
        )
    md = [
        f"# apfed drift on rows drawn like the training rows: {a.dataset}, active view {view.name}",
        "",
        f"{len(train)} training rows profiled; new rows: disjoint draws of the {len(test)} test rows (a random split of"
        " the same data, so nothing moved). Every column's PSI over all draws.",
        "",
        "| new rows | draws | columns | PSI median | mean | 90th percentile | max | columns read 'moved' or more |"
        " chance level printed |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['rows']} | {r['draws']} | {r['columns']} | {r['median']:.3f} | {r['mean']:.3f} | {r['p90']:.3f} |"
            f" {r['max']:.3f} | {100 * r['moved_share']:.1f} % | {r['chance_level']:.3f} |"
            for r in rows
        ),
    ]
    cmd = f"python benchmarks/drift_noise.py --dataset {a.dataset} --sizes {a.sizes}"
    out = Path(f"benchmarks/results/{date.today()}-drift-noise-{a.dataset}-cpu")
    write_benchmark(out, {"benchmark": "drift noise", "dataset": a.dataset, "rows": rows, "command": cmd}, md)


if __name__ == "__main__":
    main()
