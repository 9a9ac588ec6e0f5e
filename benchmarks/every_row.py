"""What training on every labelled row (``--test-fraction 0``) gains on rows the model has never seen.

The bundled set's reference test rows (20 %) play the rows whose outcome the active party learns after training
(``apfed score``'s use); the other 80 % are all the labelled data the parties have. Each method is trained on them
twice: holding out 20 % of them to test (the default), and on every one of them (test fraction 0). Both models are
scored on the later rows. Reports mean ± std over seeds.
Writes benchmarks/results/<date>-every-row-<dataset>-<machine>.{json,md}.
Usage: python benchmarks/every_row.py [--dataset handwritten] [--methods local apfed-kd] [--seeds 3] [--epochs 60]
"""

import dataclasses
import datetime
import time
from pathlib import Path

import numpy as np
from method_args import command as method_command
from method_args import method_args

from apfed.api import load_dataset
from apfed.config import make_config
from apfed.data.splits import stratified_split
from apfed.data.views import MultiViewDataset
from apfed.report import write_benchmark
from apfed.runner import run

FRACTIONS = (0.2, 0.0)


def labelled_part(full: MultiViewDataset, test_fraction: float) -> MultiViewDataset:
    """The rows ``full`` trains on, as all the labelled data there is, split again (``test_fraction``)."""
    rows = np.sort(np.asarray(full.train_idx))
    labels = full.labels[rows]
    train, test = stratified_split(labels, test_fraction, 0)
    views = [dataclasses.replace(v, X=v.X[rows]) for v in full.views]
    return dataclasses.replace(full, views=views, labels=labels, ids=full.ids[rows], train_idx=train, test_idx=test)


def main() -> None:
    a = method_args(__doc__)
    full, active = load_dataset(a.dataset, active=a.active, log=lambda *_: None)
    later = np.asarray(full.test_idx)
    X_later = full.views[active].X[later]
    y_later = np.asarray(full.class_names)[full.labels[later]]
    rows = []
    for method in a.methods:
        for fraction in FRACTIONS:
            ds = labelled_part(full, fraction)
            scores, own, t0 = [], [], time.perf_counter()
            for seed in range(a.seeds):
                cfg = make_config("default", method=method, epochs=a.epochs, seed=seed, device=a.device)
                r = run(ds, active, cfg)
                scores.append(100 * r.model.score(X_later, y_later))
                own.append(r.final.get("accuracy"))
            row = {
                "method": method,
                "test_fraction": fraction,
                "train_rows": len(ds.train_idx),
                "test_rows": len(ds.test_idx),
                "later_accuracy_mean": float(np.mean(scores)),
                "later_accuracy_std": float(np.std(scores)),
                "later_accuracy": scores,
                "own_test_accuracy": own,
                "seconds": time.perf_counter() - t0,
            }
            rows.append(row)
            print(row, flush=True)
    machine = "h200" if a.device.startswith("cuda") else "cpu"
    command = method_command("every_row.py", a)
    name, view = full.name, full.views[active].name
    rep = {"benchmark": "every labelled row", "dataset": name, "active": view, "epochs": a.epochs, "seeds": a.seeds}
    rep.update(later_rows=len(later), results=rows, command=command)
    table = ["| method | 20 % held out to test | every row trains (test fraction 0) | gain |", "|---|---|---|---|"]
    for method in a.methods:
        held, every = (next(r for r in rows if r["method"] == method and r["test_fraction"] == f) for f in FRACTIONS)
        gain = [e - h for e, h in zip(every["later_accuracy"], held["later_accuracy"], strict=True)]
        table.append(
            f"| {method} | {held['later_accuracy_mean']:.2f} ± {held['later_accuracy_std']:.2f}"
            f" ({held['train_rows']} rows) | {every['later_accuracy_mean']:.2f} ± {every['later_accuracy_std']:.2f}"
            f" ({every['train_rows']} rows) | {np.mean(gain):+.2f} ({sum(g > 0 for g in gain)} of {len(gain)} seeds)"
            " |"
        )
    md = [
        f"# Training on every labelled row: {name}, active view {view}, default recipe, {a.epochs} epochs,"
        f" {a.seeds} seeds",
        "",
        f"The {len(later)} reference test rows stand for the rows whose outcome the active party learns after training;"
        f" the other {len(full.train_idx)} are all the labelled rows the parties have. Each cell: the final standalone"
        " model's accuracy (%) on the later rows (`StandaloneModel.score`, as `apfed score`), mean ± std over seeds;"
        " gain: paired by seed.",
        "",
        *table,
    ]
    write_benchmark(Path(a.out) / f"{datetime.date.today()}-every-row-{name}-{machine}", rep, md)


if __name__ == "__main__":
    main()
