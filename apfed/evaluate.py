"""``apfed evaluate``: every method × seed on one dataset, with progress bars, a table and a report."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

from apfed import __version__
from apfed.config import TrainConfig, variant_config, variant_passives
from apfed.data.splits import fold, time_fold
from apfed.data.splits import resplit as resplit_rows
from apfed.data.timesplit import time_split_text
from apfed.data.views import MultiViewDataset, is_regression, with_passives
from apfed.errors import ConfigError, DataError
from apfed.report import (
    accuracy_note,
    epoch_label,
    interval_basis,
    machine,
    rich_table,
    summarize,
    table_console,
    unlabelled_caption,
    validation_pick,
    write_report,
)
from apfed.run_store import RunStore, data_digest
from apfed.runner import Safety, run
from apfed.spawning import run_in_processes

JOBS_ENV = "APFED_JOBS"


def auto_jobs(n_runs: int, device: str) -> int:
    """Parallel runs when none are asked for: ``APFED_JOBS`` if set (1: every run in this process), else one per core
    (at most 4) on the CPU, 1 on a GPU. A worker process costs about 5 s of CPU to start (torch and apfed imported
    again), so short runs are done sooner in one process."""
    raw = os.environ.get(JOBS_ENV, "")
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"{JOBS_ENV} must be a positive whole number of processes, got {raw!r}")
        return min(int(raw), max(1, n_runs))
    if device != "cpu":
        return 1
    return max(1, min(os.cpu_count() or 1, 4, n_runs))


def _run_one(ds: MultiViewDataset, active: int, cfg: TrainConfig, threads: int, safety: Safety | None) -> dict:
    import torch

    torch.set_num_threads(threads)  # workers share the cores; oversubscribed BLAS threads crawl
    return run(ds, active, cfg, safety=safety).to_json()


def _parallel(
    datasets: list[tuple[MultiViewDataset, int]],
    configs: list[TrainConfig],
    jobs: int,
    console,
    quiet: bool,
    safety=None,
    on_run=None,
    names: list[str] | None = None,
) -> list[dict]:
    """Each ``configs[i]`` trained on ``datasets[i]`` (a dataset and its active view) in ``jobs`` worker processes;
    Ctrl-C or a failed run stops them all at once (waiting would finish every run under way and queued first).
    ``names[i]``, where given, heads the line that says how run i ended, as it ends."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    threads = max(1, (os.cpu_count() or 1) // jobs)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=quiet) as progress:
        task = progress.add_task(f"{len(configs)} runs on {jobs} workers", total=len(configs))

        def done(i: int, r: dict) -> None:
            if on_run is not None:
                on_run(i, r)
            if names is not None and r["history"]:
                last = r["history"][-1]
                progress.console.print(f"{escape(names[i])} done: {epoch_label(last)} at epoch {last['epoch']}")
            progress.update(task, advance=1)

        calls = [(ds, active, c, threads, safety) for (ds, active), c in zip(datasets, configs, strict=True)]
        return run_in_processes(_run_one, calls, jobs, done, names)


def _run_of(cfg: TrainConfig, folds: int) -> str:
    """Which run of a method a config is: its seed, or its fold."""
    return f"fold {cfg.seed + 1}/{folds}" if folds else f"seed {cfg.seed}"


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
    resume: bool = False,
    command: str | None = None,
    resplit: bool = False,
    folds: int = 0,
    window: int = 0,
) -> dict:
    """Train each method with seeds 0..seeds-1 in-process; return (and write to ``out``) the report. A method may
    carry its own settings, ``"apfed-c[lam=0.5]"`` (``apfed.config.method_variant``): it is a row of its own. With
    ``out``, each finished run is also stored in ``out/runs/``; ``resume`` reuses the runs stored there from the
    same data and settings (an error if one was made with other settings) and trains only the others.
    ``command``: the command line that asked for the comparison, recorded in the report to repeat it. ``resplit``:
    seed s >= 1 also splits the labelled rows again (``apfed.data.splits.resplit``; seed 0 keeps the data's own
    split), so the spread over seeds includes the split's; each method's seed s is tested on the same rows.
    ``folds`` (= ``seeds``): cross-validation, seed s tests the s-th of ``folds`` stratified folds of the labelled
    rows (``apfed.data.splits.fold``), so every labelled row is tested once per method; with a time column, seed s
    tests the (s + 1)-th period in time (``apfed.data.splits.time_fold``), trained on every earlier one or, with
    ``window``, on the ``window`` periods just before it."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if len(ds.test_idx) == 0:
        raise ConfigError(
            f"{ds.name} has no test rows (test fraction 0): a comparison ranks methods by test accuracy; give a test"
            " fraction above 0 (train alone trains on every labelled row)"
        )
    console = console or Console(stderr=True, log_path=False)
    t0 = time.time()
    labels = [m for m in methods for _ in range(seeds)]
    configs = [variant_config(cfg, m, seed=s) for m in methods for s in range(seeds)]
    if folds and (resplit or folds != seeds):
        raise ConfigError("cross-validation runs one seed per fold: give folds alone, not with seeds or resplit")
    try:
        if folds:
            if window and ds.times is None:
                raise ConfigError("--window slides over periods in time: give --time-column with --folds")
            splits = [
                time_fold(ds, s, folds, window) if ds.times is not None else fold(ds, s, folds) for s in range(folds)
            ]
        else:
            splits = [resplit_rows(ds, s) if resplit and s else ds for s in range(seeds)]
    except DataError as e:  # the partial-overlap study keeps its split, too few rows for the folds: wrong options
        raise ConfigError(f"--{'folds' if folds else 'resplit'}: {e}") from None
    stores = None
    if out is not None:
        digests = {id(d): data_digest(d, active) for d in splits}  # once per distinct split: it hashes the features
        stores = [
            RunStore(
                Path(out) / "runs",
                digests[id(d)],
                asdict(safety) if safety else None,
                _unmatched_counts(d, active)["unmatched_train"],
            )
            for d in splits
        ]
    elif resume:
        raise ConfigError("resuming needs the output directory of the interrupted comparison")
    done = {i: r for i, c in enumerate(configs) if resume and (r := stores[c.seed].load(c, labels[i])) is not None}
    if resume and not quiet:
        console.print(f"resuming: {len(done)} of {len(configs)} runs already done in {stores[0].root}")
    left = [i for i in range(len(configs)) if i not in done]
    todo = [configs[i] for i in left]
    # a variant that names its passives trains on those views alone, on the same rows as the others
    data = [variant_data(splits[configs[i].seed], active, labels[i]) for i in left]

    def on_run(k: int, r: dict) -> None:  # the k-th run of todo
        if stores is not None:
            stores[todo[k].seed].save(todo[k], _labelled(r, labels[left[k]]), labels[left[k]])

    new: list[dict] = []
    if jobs == 0:
        jobs = auto_jobs(len(todo), cfg.device)
    jobs = min(jobs, len(todo))  # no idle workers (each would also split the cores' threads)
    if jobs > 1:
        names = [f"{labels[left[k]]} {_run_of(c, folds)}" for k, c in enumerate(todo)]
        new = _parallel(data, todo, jobs, console, quiet, safety, on_run, names)
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[acc]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    ) as progress:
        for k, c in enumerate(todo if jobs == 1 else []):
            task = progress.add_task(f"{escape(labels[left[k]])} {_run_of(c, folds)}", total=c.total_epochs, acc="")

            def on_epoch(row, task=task):
                progress.update(task, advance=1, acc=epoch_label(row))

            r = run(
                *data[k],
                c,
                on_epoch=on_epoch,
                log=lambda m: progress.console.log(m) if not quiet else None,
                safety=safety,
            ).to_json()
            progress.update(task, total=len(r["history"]), completed=len(r["history"]))  # an early stop, too
            new.append(r)
            on_run(k, r)
    fresh = iter(new)
    runs = [_labelled(done[i] if i in done else next(fresh), labels[i]) for i in range(len(configs))]
    resampled = bool(folds or resplit)  # a split per seed: the runs' training rows overlap
    share = _test_share(splits[-1], active) if resampled else None
    summary = summarize(runs, share, cfg.eval_last, cfg.validation_metric)
    report = {
        "dataset": ds.name,
        "active_view": ds.views[active].name,
        "views": [v.name for v in ds.views],
        "task": "regression" if is_regression(ds.labels) else "classification",
        "rows": {
            "matched_train": len(ds.train_idx),
            "test": len(ds.test_idx),
            **_unmatched_counts(ds, active),
            "unlabelled": 0 if ds.unlabelled is None else len(ds.unlabelled),  # train apfed-r/c/m/kd only
        },
        "preset": preset,
        "epochs": cfg.epochs,
        "seeds": seeds,
        "split": (
            f"{folds} folds in time by {ds.notes['test_split']['time_column']!r} (fold k tests period k + 1 of"
            f" {folds + 1} of about equal rows, trained on"
            f" {f'the {window} period(s) just before it' if window else 'every period before it'})"
            if folds and ds.times is not None
            else f"{folds}-fold cross-validation (seed s tests fold s)"
            if folds
            else "one per seed (seed 0: the data's own)"
            if resplit
            else time_split_text(ds.notes["test_split"])
            if "test_split" in ds.notes
            else "the data's own"
        ),
        **({"test_split": ds.notes["test_split"]} if "test_split" in ds.notes else {}),
        **({"fold_periods": [d.notes["fold_period"] for d in splits]} if folds and ds.times is not None else {}),
        "resplit": resplit,
        "folds": folds,
        **({"window": window} if window else {}),
        "device": cfg.device,
        "eval_last": cfg.eval_last,
        "config": cfg.to_dict(),
        "safety": asdict(safety) if safety else None,
        "machine": machine(),
        "apfed": __version__,
        **({"command": command} if command else {}),
        "seconds": time.time() - t0,
        "summary": summary,
        "validation_pick": validation_pick(summary),
        "runs": runs,
    }
    if not quiet:  # the table is the result: stdout; progress and logs went to stderr
        note = accuracy_note(
            cfg.epochs, cfg.eval_last, seeds, cfg.validation > 0, resplit, folds, report["task"] == "regression"
        )
        if any("vs_local_ci95" in r for r in summary.values()):
            note += f"; vs local [a, b]: 95 % interval of the mean difference ({interval_basis(resampled)})"
        if report["rows"]["unlabelled"]:
            note += f"\n{unlabelled_caption(report['rows']['unlabelled'])}"
        if "fold_periods" in report:
            periods = ", ".join(f"{p['test_from']} to {p['test_until']}" for p in report["fold_periods"])
            note += f"\n{report['split']}; periods tested: {periods}"
        elif "test_split" in report:
            note += f"\ntest rows: the latest ({report['split']})"
        title = f"{ds.name}, active view {ds.views[active].name}"
        table_console().print(rich_table(summary, title, note))
    if out is not None:
        paths = write_report(Path(out), report)
        if report["validation_pick"] is not None:
            paths.append(write_pick_recipe(Path(out), cfg, report["validation_pick"], ds.name))
        if not quiet:
            console.print("wrote " + ", ".join(str(p) for p in paths))
    return report


def write_pick_recipe(out: Path, cfg: TrainConfig, label: str, dataset: str) -> Path:
    """``out/recipe.toml``: the recipe of the variant the validation rows picked, for ``apfed train --config`` or a
    deployment's ``recipe=`` (seed 0; the comparison's settings with the variant's own)."""
    from apfed.recipe_file import recipe_toml

    passives = variant_passives(label)
    comments = [
        f"# the recipe that apfed evaluate's validation rows picked on {dataset}: {label}",
        "# (add test-fraction = 0.0 to train the model put to use on every labelled row)",
    ]
    text = recipe_toml(
        variant_config(cfg, label, seed=0).to_dict(), comments, {"passives": passives} if passives else {}
    )
    path = out / "recipe.toml"
    path.write_text(text)
    return path


def check_variants(ds: MultiViewDataset, active: int | str, cfg: TrainConfig, labels: list[str]) -> int:
    """Each ``--methods`` entry's settings, checked on the views it trains on, before any training; an error names
    the entry it is about. Returns the active view's index (``active``: an index or a name)."""
    from apfed.api import check_run

    for m in labels:
        try:
            c = variant_config(cfg, m)
            active = check_run(ds, active, c)
            if variant_passives(m) is not None:
                if c.method == "local":
                    raise ConfigError("local trains with no passive: passives= would change nothing")
                check_run(*variant_data(ds, active, m), c)
        except ConfigError as e:
            if "[" not in m or str(e).startswith("--methods"):
                raise
            raise ConfigError(f"--methods {m!r}: {e}") from None
    return active


def variant_data(ds: MultiViewDataset, active: int, label: str) -> tuple[MultiViewDataset, int]:
    """The dataset and active view a ``--methods`` entry trains on: ``ds``, or only the passives it names."""
    views = variant_passives(label)
    if views is None:
        return ds, active
    try:
        return with_passives(ds, active, views)
    except ConfigError as e:
        raise ConfigError(f"--methods {label!r}: {e}") from None


def _labelled(run: dict, label: str) -> dict:
    """A run of a method with its own settings carries its ``--methods`` entry as ``variant``."""
    if label != run["method"]:
        run["variant"] = label
    return run


def _test_share(ds: MultiViewDataset, active: int) -> float:
    """Test rows per training row of ``ds``'s split (the rows no passive holds included)."""
    u = _unmatched_counts(ds, active)
    return (len(ds.test_idx) + u["unmatched_test"]) / (len(ds.train_idx) + u["unmatched_train"])


def _unmatched_counts(ds: MultiViewDataset, active: int) -> dict[str, int]:
    """How many of the active party's training and test rows some passive lacks."""
    u = ds.unmatched
    if u is None or u.view != active:
        return {"unmatched_train": 0, "unmatched_test": 0}
    n_test = int(u.test.sum())
    return {"unmatched_train": len(u) - n_test, "unmatched_test": n_test}
