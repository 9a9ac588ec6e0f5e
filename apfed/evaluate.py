"""``apfed evaluate``: every method × seed on one dataset, with progress bars, a table and a report."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from apfed.config import TrainConfig
from apfed.data.views import MultiViewDataset
from apfed.report import machine, rich_table, summarize, write_report
from apfed.runner import run

DEFAULT_METHODS = ("local", "apfed-r", "apfed-c", "apfed-kd", "tvfl")


def evaluate(ds: MultiViewDataset, active: int, methods: list[str], seeds: int, cfg: TrainConfig, out: Path | None,
             preset: str, console=None, quiet: bool = False) -> dict:
    """Train each method with seeds 0..seeds-1 in-process; return (and write to ``out``) the report."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    runs = []
    t0 = time.time()
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[acc]}"),
                  TimeElapsedColumn(), console=console, disable=quiet) as progress:
        for method in methods:
            for seed in range(seeds):
                c = replace(cfg, method=method, seed=seed)
                task = progress.add_task(f"{method} seed {seed}", total=c.epochs, acc="")

                def on_epoch(row, task=task):
                    progress.update(task, advance=1, acc=f"acc {row['accuracy']:.2f}")

                r = run(ds, active, c, on_epoch=on_epoch, log=lambda m: progress.console.log(m) if not quiet else None)
                runs.append(r.to_json())
    summary = summarize(runs)
    report = {
        "dataset": ds.name, "active_view": ds.views[active].name, "views": [v.name for v in ds.views],
        "preset": preset, "epochs": cfg.epochs, "seeds": seeds, "device": cfg.device, "eval_last": cfg.eval_last,
        "config": cfg.to_dict(), "machine": machine(), "seconds": time.time() - t0, "summary": summary, "runs": runs,
    }
    if not quiet:
        console.print(rich_table(summary, f"{ds.name}, active view {ds.views[active].name}"))
    if out is not None:
        paths = write_report(Path(out), report)
        if not quiet:
            console.print("wrote " + ", ".join(str(p) for p in paths))
    return report
