"""``apfed evaluate``, ``apfed train`` and ``apfed simulate``: the commands that train."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from apfed.cli.common import (
    Active,
    BatchSize,
    Data,
    DataDir,
    Dataset,
    Device,
    DpClip,
    DpNoise,
    Encrypt,
    Epochs,
    IdColumn,
    K,
    KdTemperature,
    KdWeight,
    LabelColumn,
    Labelled,
    Lam,
    Lr,
    Metrics,
    OnBadMessage,
    Overlap,
    PassiveLosses,
    Passives,
    Payload,
    Pipeline,
    Preset,
    RoundTimeout,
    Task,
    Temperature,
    TestFraction,
    TimeColumn,
    Views,
    _check_data_options,
    _check_device,
    _check_policy,
    _config,
    _dataset,
    _history_writer,
    _method_entry,
    _metrics_file,
    _output_dir,
    _output_file,
    _safety,
    app,
)
from apfed.cli.config_file import ConfigFile, Sets, command_line
from apfed.config import DEFAULT_METHODS
from apfed.errors import ApfedError, ConfigError, DataError


@app.command()
def evaluate(
    config: ConfigFile = None,
    dataset: Dataset = None,
    views: Views = None,
    active: Active = None,
    passives: Passives = None,
    overlap: Overlap = None,
    labelled: Labelled = None,
    test_fraction: TestFraction = None,
    time_column: TimeColumn = None,
    data: Data = None,
    data_dir: DataDir = None,
    id_column: IdColumn = "id",
    label_column: LabelColumn = "label",
    task: Task = "classification",
    methods: Annotated[
        str,
        typer.Option(
            help="Comma-separated: local, apfed-r, apfed-c, apfed-m, apfed-kd, tvfl, centralized; a method may take"
            " its own settings, each variant a row: 'local,apfed-c\\[lam=0.5],apfed-c\\[lam=2,temperature=0.5]';"
            " a grid: 'apfed-c\\[lam=0.5|1|2]'; its own passives: 'tvfl\\[passives=kar|pix]'."
        ),
    ] = ",".join(DEFAULT_METHODS),
    seeds: Annotated[int | None, typer.Option(min=1, help="Seeds per method (0..N-1; default 3).")] = None,
    epochs: Epochs = None,
    preset: Preset = "default",
    device: Device = "cpu",
    lr: Lr = None,
    batch_size: BatchSize = None,
    lam: Lam = None,
    temperature: Temperature = None,
    kd_temperature: KdTemperature = None,
    kd_weight: KdWeight = None,
    passive_losses: PassiveLosses = None,
    batches_per_round: K = None,
    pipeline: Pipeline = False,
    payload: Payload = None,
    dp_clip: DpClip = None,
    dp_noise: DpNoise = None,
    encrypt: Encrypt = False,
    on_bad_message: OnBadMessage = "fail",
    set_: Sets = None,
    jobs: Annotated[
        int,
        typer.Option(min=0, help="Runs in parallel processes (0: one per core, at most 4, on the CPU; 1 on a GPU)."),
    ] = 0,
    out: Annotated[Path, typer.Option(help="Report directory.")] = Path("results"),
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Reuse the runs an interrupted comparison finished (stored in OUT/runs/, same data and settings)"
            " and train only the others.",
        ),
    ] = False,
    resplit: Annotated[
        bool,
        typer.Option(
            "--resplit",
            help="Each seed s >= 1 also draws its own stratified train/test split (seed 0 keeps the data's own), the"
            " same for every method: the spread then includes the split's.",
        ),
    ] = False,
    folds: Annotated[
        int | None,
        typer.Option(
            min=2,
            help="Cross-validation: K stratified folds of the labelled rows, seed s trained on the others and tested"
            " on fold s (K runs per method; every labelled row tested once).",
        ),
    ] = None,
    window: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="With --folds K and --time-column: each fold trains on the W periods just before the one it tests (a"
            " sliding window), not on every earlier one.",
        ),
    ] = None,
):
    """Compare methods on one dataset; write results.json, results.md and results.png to --out."""
    from apfed.config import parse_method_list

    chosen = parse_method_list(methods)  # in order, each once; a method may carry its own settings
    cfg = _config(
        preset,
        set_,
        epochs=epochs,
        device=device,
        lr=lr,
        batch_size=batch_size,
        lam=lam,
        temperature=temperature,
        kd_temperature=kd_temperature,
        kd_weight=kd_weight,
        passive_losses=passive_losses,
        batches_per_round=batches_per_round,
        pipeline=pipeline or None,
        payload=payload,
        dp_clip=dp_clip,
        dp_noise=dp_noise,
    )
    _check_policy(on_bad_message)
    _check_data_options(dataset, views, data, data_dir)
    if test_fraction == 0:
        raise ConfigError(
            "evaluate ranks methods by their test accuracy: --test-fraction must be above 0 (apfed train"
            " --test-fraction 0 trains a model on every labelled row)"
        )
    if folds is not None and (seeds is not None or resplit or test_fraction is not None):  # with a time column too
        raise ConfigError(
            "--folds makes the splits, one seed per fold: leave out --seeds, --resplit and --test-fraction"
        )
    if resplit and time_column is not None:
        raise ConfigError(
            "--resplit cannot go with --time-column: an out-of-time split tests the latest rows (--folds K with"
            " --time-column tests K periods in turn, each trained on the periods before it)"
        )
    if (resplit or folds) and (overlap is not None or labelled is not None):
        what, study = "--resplit" if resplit else "--folds", "--overlap" if overlap is not None else "--labelled"
        raise ConfigError(
            f"{what} cannot go with {study}: such a study draws its rows (the passives', or those that keep a label)"
            " from one split"
        )
    if window is not None and (folds is None or time_column is None):
        raise ConfigError("--window slides over periods in time: give it with --folds K and --time-column")
    seeds = folds or seeds or 3
    _output_dir(out)
    from apfed.evaluate import evaluate as run_eval

    ds, a = _dataset(
        dataset,
        views,
        active,
        data,
        data_dir,
        id_column,
        label_column,
        passives,
        overlap,
        test_fraction,
        labelled,
        task,
        time_column,
    )
    from apfed.evaluate import check_variants

    check_variants(ds, a, cfg, chosen)  # each on the views it trains on (a variant may name its passives)
    safety = _safety(encrypt, on_bad_message, None)
    options = {"jobs": jobs, "safety": safety, "resume": resume, "command": command_line(), "resplit": resplit}
    options["folds"], options["window"] = folds or 0, window or 0
    run_eval(ds, a, chosen, seeds, cfg, out, preset, **options)


@app.command()
def train(
    config: ConfigFile = None,
    method: Annotated[
        str,
        typer.Option(
            help="A standalone method: local, apfed-r, apfed-c, apfed-m, apfed-kd; or a variant as evaluate names it,"
            " 'apfed-c\\[lam=0.25]' (its own settings, and passives=...)."
        ),
    ] = "apfed-kd",
    out: Annotated[Path, typer.Option(help="Where to write the standalone model file.")] = Path("model.safetensors"),
    dataset: Dataset = None,
    views: Views = None,
    active: Active = None,
    passives: Passives = None,
    overlap: Overlap = None,
    labelled: Labelled = None,
    test_fraction: TestFraction = None,
    time_column: TimeColumn = None,
    data: Data = None,
    data_dir: DataDir = None,
    id_column: IdColumn = "id",
    label_column: LabelColumn = "label",
    task: Task = "classification",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    epochs: Epochs = None,
    preset: Preset = "default",
    device: Device = "cpu",
    lr: Lr = None,
    batch_size: BatchSize = None,
    lam: Lam = None,
    temperature: Temperature = None,
    kd_temperature: KdTemperature = None,
    kd_weight: KdWeight = None,
    passive_losses: PassiveLosses = None,
    batches_per_round: K = None,
    pipeline: Pipeline = False,
    payload: Payload = None,
    dp_clip: DpClip = None,
    dp_noise: DpNoise = None,
    encrypt: Encrypt = False,
    on_bad_message: OnBadMessage = "fail",
    round_timeout: RoundTimeout = None,
    checkpoint_dir: Annotated[
        Path | None, typer.Option(help="Write checkpoints here (the active's and each passive's own).")
    ] = None,
    checkpoint_every: Annotated[int, typer.Option(min=0, help="Rounds between checkpoints (0: none).")] = 0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run checkpointed in --checkpoint-dir.")
    ] = False,
    set_: Sets = None,
    metrics: Metrics = None,
):
    """Train one method and write the active party's standalone model."""
    from apfed.config import STANDALONE

    base, variant, passives = _method_entry(method, passives)
    if base in STANDALONE and not STANDALONE[base]:
        raise ConfigError(
            f"{base} needs every party at prediction time, so it yields no standalone model; "
            "choose local, apfed-r, apfed-c, apfed-m or apfed-kd"
        )
    cfg = _config(
        preset,
        [*(set_ or []), *variant],  # a variant's own settings win, as in evaluate
        epochs=epochs,
        device=device,
        method=base,
        seed=seed,
        lr=lr,
        batch_size=batch_size,
        lam=lam,
        temperature=temperature,
        kd_temperature=kd_temperature,
        kd_weight=kd_weight,
        passive_losses=passive_losses,
        batches_per_round=batches_per_round,
        pipeline=pipeline or None,
        payload=payload,
        dp_clip=dp_clip,
        dp_noise=dp_noise,
    )
    if (checkpoint_every or resume) and checkpoint_dir is None:
        raise ConfigError("--checkpoint-every and --resume need --checkpoint-dir")
    if resume and not (checkpoint_dir / "active.ckpt").exists():
        raise DataError(f"nothing to resume: {checkpoint_dir / 'active.ckpt'} does not exist")
    _check_policy(on_bad_message, round_timeout)
    _check_data_options(dataset, views, data, data_dir)
    _output_file(out, {"input data": data})
    _metrics_file(metrics, out, data)
    if checkpoint_dir is not None:
        _output_dir(checkpoint_dir)
    from rich.console import Console
    from rich.progress import Progress

    from apfed.report import epoch_label
    from apfed.runner import run

    ds, a = _dataset(
        dataset,
        views,
        active,
        data,
        data_dir,
        id_column,
        label_column,
        passives,
        overlap,
        test_fraction,
        labelled,
        task,
        time_column,
    )
    from apfed.api import check_run

    check_run(ds, a, cfg)
    safety = _safety(
        encrypt,
        on_bad_message,
        round_timeout,
        checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
        checkpoint_every=checkpoint_every,
        resume=resume,
    )
    console = Console(stderr=True, log_path=False)  # log lines without the source line that wrote them
    history = _history_writer(metrics, resume)
    with Progress(console=console) as progress:
        bar = progress.add_task(f"{method} on {ds.name}", total=cfg.total_epochs)

        def on_epoch(row: dict) -> None:
            progress.update(bar, advance=1, description=f"{method} {epoch_label(row)}")
            if history:
                history(row)

        r = run(ds, a, cfg, on_epoch=on_epoch, log=lambda m: progress.console.log(m), safety=safety)
        progress.update(bar, total=len(r.history), completed=len(r.history))  # an early stop ends the bar too
    if history:  # before the model: a model that cannot be written (it then goes elsewhere) keeps its curve
        history.finish(r.history)
    from apfed.report import test_line

    try:
        r.model.save(out)
    except ApfedError:
        console.print(test_line(r.final))  # the run's figure still, above the error line that says where the model is
        raise
    if r.faults:
        console.print(f"{len(r.faults)} passive contribution(s) skipped (late or bad replies); see the log above")
    console.print(f"{test_line(r.final)}; wrote {out}")


@app.command()
def simulate(
    config: ConfigFile = None,
    dataset: Dataset = None,
    views: Views = None,
    active: Active = None,
    passives: Passives = None,
    overlap: Overlap = None,
    labelled: Labelled = None,
    test_fraction: TestFraction = None,
    time_column: TimeColumn = None,
    data: Data = None,
    data_dir: DataDir = None,
    id_column: IdColumn = "id",
    label_column: LabelColumn = "label",
    task: Task = "classification",
    method: Annotated[
        str, typer.Option(help="apfed-r, apfed-c, apfed-m, apfed-kd or tvfl; or a variant, 'apfed-c\\[lam=0.25]'.")
    ] = "apfed-c",
    epochs: Epochs = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    batches_per_round: Annotated[int, typer.Option("--k", min=1, help="Minibatches per exchange (K).")] = 1,
    pipeline: Pipeline = False,
    preset: Preset = "default",
    device: Device = "cpu",
    lr: Lr = None,
    batch_size: BatchSize = None,
    lam: Lam = None,
    temperature: Temperature = None,
    kd_temperature: KdTemperature = None,
    kd_weight: KdWeight = None,
    passive_losses: PassiveLosses = None,
    set_: Sets = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the standalone model file.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show Flower's own log.")] = False,
    metrics: Metrics = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1, help="Torch threads of the active party (default: the cores the passives leave, at least one)."
        ),
    ] = None,
):
    """Multi-process local simulation with the Flower simulation engine: one virtual SuperNode per passive."""
    if method in ("local", "centralized"):
        raise ConfigError(f"{method} has no passive parties to simulate; use 'apfed evaluate'")
    _check_data_options(dataset, views, data, data_dir, default="mnist5k")
    _check_device(device)
    if out:
        _output_file(out, {"input data": data})
    _metrics_file(metrics, out, data)
    history = _history_writer(metrics)
    from rich.console import Console
    from rich.progress import Progress

    from apfed.api import simulate as run_sim
    from apfed.report import epoch_label

    progress = Progress(console=Console(stderr=True, log_path=False))
    bar = progress.add_task(f"{method} over Flower simulation", start=False)

    def on_start(epochs: int) -> None:  # the data and settings are checked: the bar shows from here
        progress.update(bar, total=epochs)
        progress.start()
        progress.start_task(bar)

    def on_epoch(row: dict) -> None:
        progress.update(bar, advance=1, description=f"{method} {epoch_label(row)}")
        if history:
            history(row)

    options = {"lr": lr, "batch_size": batch_size, "lam": lam, "temperature": temperature}
    options |= {"kd_temperature": kd_temperature, "kd_weight": kd_weight, "passive_losses": passive_losses}
    recipe = [f"{key}={value}" for key, value in options.items() if value is not None]  # as each node reads --set
    base, variant, passives = _method_entry(method, passives)
    try:
        r = run_sim(
            base,
            dataset=dataset,
            views=views,
            active=active,
            passives=passives,
            overlap=overlap,
            labelled=labelled,
            test_fraction=test_fraction,
            time_column=time_column,
            data=data,
            data_dir=data_dir,
            id_column=id_column,
            label_column=label_column,
            task=task,
            preset=preset,
            seed=seed,
            epochs=epochs,
            batches_per_round=batches_per_round,
            pipeline=pipeline,
            device=device,
            sets=[*recipe, *(set_ or []), *variant],  # --set wins over the options, a variant's own over both
            model_out=out,
            verbose=verbose,
            on_start=on_start,
            on_epoch=on_epoch,
            threads=threads,
        )
        progress.update(bar, total=len(r["history"]), completed=len(r["history"]))  # an early stop ends the bar too
        if history:
            history.finish(r["history"])
    finally:
        if progress.live.is_started:  # stopping a bar that never showed prints an empty line
            progress.stop()
    from apfed.metrics import standalone_rows
    from apfed.report import final_note, test_line

    n_passives = r["passives"]
    head = "r2" if "r2" in r else "accuracy"  # a regression's headline is its R²
    if r.get(head) is None:  # no test rows
        tested = test_line(r["final"])
    else:
        places, name, unit = (4, "R²", "") if head == "r2" else (2, "accuracy", " %")
        own = standalone_rows(r["history"], r.get("teacher_epochs", 0))  # a fresh student's, not its teacher's
        last = f"last-{len(own[-10:])}-epoch mean {r[head]:.{places}f}"
        mean = "" if "best_epoch" in r["final"] else last
        tested = (
            f"test {name} {r['final'][head]:.{places}f}{unit}"
            f" ({(mean + final_note(r['final'])).removeprefix(', ').removeprefix('; ')})"
        )
    typer.echo(
        f"{method} over Flower simulation, {n_passives} passive(s): {tested}, "
        f"{r['wire']['messages']} messages, {r['wire']['bytes'] / 1e6:.1f} MB"
    )
    if out:
        typer.echo(f"wrote {out}", err=True)
