"""What temperature scaling (``--set calibrate=true``) does to a standalone model's probabilities on the test rows.

Each method is trained with validation rows (``validation=0.2``: the epoch kept is the best there) with and without
calibration on those rows; the same seed trains the same model, so the two differ only by the temperature. Reports
the test log-loss and Brier score (lower is better; the accuracy is the same by construction) and the temperature,
mean ± std over seeds. Writes benchmarks/results/<date>-calibration-<dataset>-<machine>.{json,md}.
Usage: python benchmarks/calibration.py [--dataset handwritten] [--methods local apfed-kd] [--seeds 3] [--epochs 60]
"""

import datetime
from pathlib import Path

import numpy as np
from method_args import command as method_command
from method_args import method_args

from apfed.api import load_dataset
from apfed.config import make_config
from apfed.report import write_benchmark
from apfed.runner import run


def main() -> None:
    a = method_args(__doc__)
    ds, active = load_dataset(a.dataset, active=a.active, log=lambda *_: None)
    rows = []
    for method in a.methods:
        for calibrate in (False, True):
            finals = []
            for seed in range(a.seeds):
                cfg = make_config(
                    "default", method=method, epochs=a.epochs, seed=seed, device=a.device, validation=0.2,
                    calibrate=calibrate,
                )  # fmt: skip
                finals.append(run(ds, active, cfg).final)
            row = {"method": method, "calibrate": calibrate, "finals": finals}
            for key in ("accuracy", "log_loss", "brier", "calibration_temperature"):
                if key in finals[0]:
                    row[key] = [float(np.mean([f[key] for f in finals])), float(np.std([f[key] for f in finals]))]
            rows.append(row)
            print({k: v for k, v in row.items() if k != "finals"}, flush=True)
    machine = "h200" if a.device.startswith("cuda") else "cpu"
    command = method_command("calibration.py", a)
    view = ds.views[active].name
    rep = {"benchmark": "calibration", "dataset": ds.name, "active": view, "epochs": a.epochs, "seeds": a.seeds}
    rep.update(results=rows, command=command)

    def cell(row: dict, key: str, digits: int = 4) -> str:
        return f"{row[key][0]:.{digits}f} ± {row[key][1]:.{digits}f}" if key in row else "–"

    table = [
        "| method | calibrated | test accuracy (%) | test log-loss | test Brier score | temperature |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        table.append(
            f"| {r['method']} | {'yes' if r['calibrate'] else 'no'} | {cell(r, 'accuracy', 2)} | {cell(r, 'log_loss')}"
            f" | {cell(r, 'brier')} | {cell(r, 'calibration_temperature', 3)} |"
        )
    md = [
        f"# Calibration: {ds.name}, active view {view}, default recipe, {a.epochs} epochs, {a.seeds} seeds",
        "",
        f"Validation rows: 20 % of the training rows (the epoch kept is the best on them); calibrated: temperature"
        f" scaling on the same rows (`--set calibrate=true`). Test rows: {len(ds.test_idx)}. Mean ± std over seeds;"
        " the same seed trains the same model with and without, so the accuracy is equal.",
        "",
        *table,
    ]
    write_benchmark(Path(a.out) / f"{datetime.date.today()}-calibration-{ds.name}-{machine}", rep, md)


if __name__ == "__main__":
    main()
