"""``apfed evaluate``: every method × seed on one dataset, with progress bars, a table and a report."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, replace
from pathlib import Path

from apfed.config import TrainConfig
from apfed.data.views import MultiViewDataset
from apfed.report import machine, rich_table, summarize, write_report
from apfed.runner import Safety, run
from apfed.spawning import without_main_script


def auto_jobs(n_runs: int, device: str) -> int:
    """Parallel runs when none are asked for: one per core (at most 4) on the CPU, 1 on a GPU."""
    if device != "cpu":
        return 1
    return max(1, min(os.cpu_count() or 1, 4, n_runs))


def _run_one(ds: MultiViewDataset, active: int, cfg: TrainConfig, threads: int, safety: Safety | None) -> dict:
    import torch

    torch.set_num_threads(threads)  # workers share the cores; oversubscribed BLAS threads crawl
    return run(ds, active, cfg, safety=safety).to_json()


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the main process, which stops them (no traceback from every worker)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _parallel(ds, active, configs: list[TrainConfig], jobs: int, console, quiet: bool, safety=None) -> list[dict]:
    import multiprocessing as mp

    from rich.progress import Progress

    threads = max(1, (os.cpu_count() or 1) // jobs)
    with without_main_script():  # a caller's script without a main guard must not run again in each worker
        pool = mp.get_context("spawn").Pool(jobs, initializer=_ignore_interrupts)
    try:
        with Progress(console=console, disable=quiet) as progress:
            task = progress.add_task(f"{len(configs)} runs on {jobs} workers", total=len(configs))
            pending = [pool.apply_async(_run_one, (ds, active, c, threads, safety)) for c in configs]
            runs = []
            for r in pending:
                runs.append(r.get())
                progress.update(task, advance=1)
        pool.close()
    except BaseException:
        # Ctrl-C or a failed run: stop the workers now; waiting would finish every queued run first
        pool.terminate()
        raise
    finally:
        pool.join()
    return runs


def evaluate(
    ds: MultiViewDataset,
    active: int,
    methods: list[str],
    seeds: int,
    cfg: TrainConfig,
    out: Path | None,
    preset: str,
    console=None,
    quiet: bool = False,
    jobs: int = 1,
    safety: Safety | None = None,
) -> dict:
    """Train each method with seeds 0..seeds-1 in-process; return (and write to ``out``) the report."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    runs = []
    t0 = time.time()
    if jobs == 0:
        jobs = auto_jobs(len(methods) * seeds, cfg.device)
    jobs = min(jobs, len(methods) * seeds)  # no idle workers (each would also split the cores' threads)
    if jobs > 1:
        configs = [replace(cfg, method=m, seed=s) for m in methods for s in range(seeds)]
        runs = _parallel(ds, active, configs, jobs, console, quiet, safety)
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[acc]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    ) as progress:
        for method in methods if jobs == 1 else []:
            for seed in range(seeds):
                c = replace(cfg, method=method, seed=seed)
                task = progress.add_task(f"{method} seed {seed}", total=c.epochs, acc="")

                def on_epoch(row, task=task):
                    progress.update(task, advance=1, acc=f"acc {row['accuracy']:.2f}")

                r = run(
                    ds,
                    active,
                    c,
                    on_epoch=on_epoch,
                    log=lambda m: progress.console.log(m) if not quiet else None,
                    safety=safety,
                )
                runs.append(r.to_json())
    summary = summarize(runs)
    report = {
        "dataset": ds.name,
        "active_view": ds.views[active].name,
        "views": [v.name for v in ds.views],
        "preset": preset,
        "epochs": cfg.epochs,
        "seeds": seeds,
        "device": cfg.device,
        "eval_last": cfg.eval_last,
        "config": cfg.to_dict(),
        "safety": asdict(safety) if safety else None,
        "machine": machine(),
        "seconds": time.time() - t0,
        "summary": summary,
        "runs": runs,
    }
    if not quiet:  # the table is the result: stdout; progress and logs went to stderr
        Console().print(rich_table(summary, f"{ds.name}, active view {ds.views[active].name}"))
    if out is not None:
        paths = write_report(Path(out), report)
        if not quiet:
            console.print("wrote " + ", ".join(str(p) for p in paths))
    return report
