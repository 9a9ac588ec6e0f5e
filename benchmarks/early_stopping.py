"""What validation rows and early stopping cost and save: each method trained for the preset's epochs (the model of
the last epoch), against the same with ``validation`` (a held-out share of the training rows picks the standalone
model's epoch) and ``patience`` (the run stops after that many epochs without a better validation figure).

Reports per setting, mean ± std over seeds: the test accuracy of the model kept (the last epoch's, or the best
validation epoch's), the reference's figure (mean test accuracy of the last 10 epochs; for a stopped run, of its
last 10), ROC-AUC, epochs run and seconds.
Writes benchmarks/results/<date>-early-stopping-<dataset>-<preset>-patience<N>-<machine>.{json,md}.
Usage: python benchmarks/early_stopping.py [--dataset handwritten] [--preset default] [--validation 0.1]
       [--patience 10] [--metric accuracy] [--methods local,apfed-c] [--seeds 3] [--device cpu] [--overlap F]
``--overlap F``: the passives hold only that share of the training rows (a partial overlap, as ``evaluate``'s).
"""

import argparse
import dataclasses
import datetime
import time
from pathlib import Path

import numpy as np

from apfed.api import load_dataset
from apfed.config import make_config
from apfed.report import write_benchmark
from apfed.runner import run


def _best(runs: list[dict]) -> str:
    """`` (best: 22, 31, 18)``: each seed's kept epoch, when validation picked one."""
    best = [x["best_epoch"] for x in runs if x["best_epoch"] is not None]
    return f" (best: {', '.join(map(str, best))})" if best else ""


def _rows(rows: list[dict]) -> str:
    """The validation rows of a run (the same for every seed's split size): ``160``."""
    counts = sorted({x["validation_rows"] for r in rows for x in r["runs"] if x["validation_rows"]})
    return ", ".join(map(str, counts)) or "none"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="handwritten")
    ap.add_argument("--views", type=int, default=None)
    ap.add_argument("--active", default=None)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--validation", type=float, default=0.1)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--metric", default="accuracy")
    ap.add_argument("--methods", default="local,apfed-c")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--overlap", type=float, default=None)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    ds, active = load_dataset(a.dataset, views=a.views, active=a.active, overlap=a.overlap, log=lambda *_: None)
    settings = [
        ("every epoch, the last kept", {}),
        (
            f"validation {a.validation:g}, patience {a.patience} ({a.metric})",
            {"validation": a.validation, "patience": a.patience, "validation_metric": a.metric},
        ),
    ]
    rows = []
    for method in a.methods.split(","):
        for label, over in settings:
            runs = []
            for seed in range(a.seeds):
                cfg = make_config(a.preset, method=method, seed=seed, device=a.device)
                t0 = time.perf_counter()
                r = run(ds, active, dataclasses.replace(cfg, **over))
                runs.append(
                    {
                        "seed": seed,
                        "kept_accuracy": r.final["accuracy"],
                        "last10_accuracy": float(np.mean([h["accuracy"] for h in r.history[-10:]])),
                        "roc_auc": r.final.get("roc_auc"),
                        "epochs_run": len(r.history),
                        "best_epoch": r.final.get("best_epoch"),
                        "validation_rows": r.model.provenance.get("validation_rows") if r.model else None,
                        "seconds": time.perf_counter() - t0,
                    }
                )
            row = {"method": method, "setting": label, "runs": runs}
            for key in ("kept_accuracy", "last10_accuracy", "roc_auc", "epochs_run", "seconds"):
                vals = [x[key] for x in runs]
                row[f"{key}_mean"], row[f"{key}_std"] = float(np.mean(vals)), float(np.std(vals))
            rows.append(row)
            print({k: v for k, v in row.items() if k != "runs"}, flush=True)
    machine = "h200" if a.device.startswith("cuda") else "cpu"
    name = ds.name if a.views is None else f"{ds.name}{a.views}"
    overlap = f"-overlap{a.overlap:g}" if a.overlap is not None else ""
    command = (
        f"python benchmarks/early_stopping.py --dataset {a.dataset}"
        + (f" --views {a.views}" if a.views else "")
        + (f" --active {a.active}" if a.active else "")
        + f" --preset {a.preset} --validation {a.validation} --patience {a.patience} --metric {a.metric}"
        + f" --methods {a.methods} --seeds {a.seeds} --device {a.device}"
        + (f" --overlap {a.overlap:g}" if a.overlap is not None else "")
    )
    epochs = make_config(a.preset).epochs
    rep = {"benchmark": "early stopping", "dataset": name, "active": ds.views[active].name, "preset": a.preset}
    rep.update(epochs=epochs, seeds=a.seeds, overlap=a.overlap, results=rows, command=command)
    table = [
        "| method | setting | test accuracy of the model kept (%) | mean of the last 10 epochs (%) | ROC-AUC "
        "| epochs run | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        table.append(
            f"| {r['method']} | {r['setting']} | {r['kept_accuracy_mean']:.2f} ± {r['kept_accuracy_std']:.2f} | "
            f"{r['last10_accuracy_mean']:.2f} ± {r['last10_accuracy_std']:.2f} | {r['roc_auc_mean']:.4f} | "
            f"{r['epochs_run_mean']:.0f}{_best(r['runs'])} | {r['seconds_mean']:.1f} |"
        )
    md = [
        f"# Early stopping: {name}, active view {ds.views[active].name}, preset `{a.preset}` ({epochs} epochs),"
        f" {a.seeds} seeds",
        "",
        f"With validation, {a.validation:.0%} of the training rows are held out (stratified; they train nothing) and"
        f" the standalone model kept is the epoch with the best validation {a.metric}; "
        + (
            f"the run stops after {a.patience} epochs without a better one."
            if a.patience
            else "every epoch is trained (patience 0), so the best of all of them is kept."
        )
        + " Every figure is the mean ± std over seeds; test rows are the same for every setting."
        + (
            f" The passives hold {a.overlap:.0%} of the training rows (drawn at random, seeded); the standalone"
            " methods also train on the others, by their task loss, and draw validation rows from all of them"
            f" ({_rows(rows)} per run)."
            if a.overlap is not None
            else ""
        ),
        "",
        *table,
    ]
    out = Path(a.out) / (
        f"{datetime.date.today()}-early-stopping-{name}-{a.preset}-patience{a.patience}{overlap}-{machine}"
    )
    write_benchmark(out, rep, md)


if __name__ == "__main__":
    main()
