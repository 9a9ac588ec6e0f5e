"""The ``apfed`` command line: evaluate, train, predict, export."""

from __future__ import annotations

import csv
import errno
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from apfed.config import DEFAULT_METHODS
from apfed.errors import ApfedError, ConfigError, DataError
from protocols.errors import ProtocolError

if TYPE_CHECKING:
    from apfed.history_file import HistoryWriter

SET_HELP = "Any training setting, KEY=VALUE (repeatable); docs/settings.md lists them."

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Vertical federated learning where the active party ends up with a standalone model.",
)


def _show_version(value: bool) -> None:
    """``--version``: what two organizations compare before a deployment (read without importing torch)."""
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    from apfed import __version__
    from protocols.messages import SCHEMA_VERSION

    def installed(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    typer.echo(
        f"apfed {__version__} (message schema {SCHEMA_VERSION}; torch {installed('torch')}, flwr {installed('flwr')})"
    )
    raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Show the versions and exit.")
    ] = False,
) -> None:
    pass


Dataset = Annotated[
    str | None,
    typer.Option(
        help="Bundled (mnist5k, handwritten, digits) or image set "
        "(mnist, fashion-mnist, cifar10, cifar100; needs --data-dir)."
    ),
]
Views = Annotated[int | None, typer.Option(min=1, help="Number of horizontal strips for image sets (default 2).")]
Active = Annotated[str | None, typer.Option(help="Active view: an index or a name such as 'fou' or 'bottom'.")]
Passives = Annotated[
    str | None,
    typer.Option(help="The passive views, comma-separated names or indices, e.g. 'kar,pix' (default: all others)."),
]
THRESHOLD_HELP = (
    "CLASS=T: predict CLASS wherever its probability is at least T, instead of the most probable class (fraud,"
    " churn: apfed score lists how each cut-off does)."
)
TestFraction = Annotated[
    float | None,
    typer.Option(
        help="The share of the labelled rows held out to test (stratified, seeded; default 0.2). 0: train on every"
        " labelled row, for the model put to use once a run with test rows has been judged (no test figure).",
    ),
]
Overlap = Annotated[
    float | None,
    typer.Option(
        help="Study a partial overlap: the passives hold only this fraction of the training rows (random, seeded);"
        " the standalone methods also train on the rest (bundled and image sets; --data files match by ID).",
    ),
]
Data = Annotated[
    list[str] | None,
    typer.Option(
        "--data",
        help="One CSV/NPZ file per party, the active party's first; or one NPZ file with an array view_<name> per view"
        " (rows aligned) and the labels.",
    ),
]
DataDir = Annotated[Path | None, typer.Option(help="Directory holding a full image set in its standard format.")]
IdColumn = Annotated[str, typer.Option(help="ID column of the --data files.")]
Pipeline = Annotated[
    bool,
    typer.Option(
        "--pipeline", help="Queue the next round before applying this one (overlaps the parties; one round stale)."
    ),
]
Payload = Annotated[
    str | None, typer.Option(help="Dtype of embeddings and gradients on the wire: float32 or float16 (half the bytes).")
]
LabelColumn = Annotated[str, typer.Option(help="Label column of the active party's --data file.")]
Preset = Annotated[str, typer.Option(help="'default' (fast recipe) or 'paper' (reference protocol).")]
Device = Annotated[str, typer.Option(help="cpu or cuda.")]
Encrypt = Annotated[
    bool,
    typer.Option(
        "--encrypt", help="Seal every payload end to end (X25519 + HKDF + AES-256-GCM; keys made per run here)."
    ),
]
OnBadMessage = Annotated[
    str, typer.Option(help="A passive's bad or missing reply in a training round: skip it, or fail the run.")
]
RoundTimeout = Annotated[
    float | None, typer.Option(help="Seconds a passive has to answer a round (> 0); a late one is skipped.")
]
DpClip = Annotated[float | None, typer.Option(min=0, help="DP: clip each sent embedding to this L2 norm.")]
DpNoise = Annotated[float | None, typer.Option(min=0, help="DP: Gaussian noise std as a multiple of --dp-clip.")]
Epochs = Annotated[int | None, typer.Option(min=1, help="Epochs (default: the preset's).")]
Metrics = Annotated[
    Path | None,
    typer.Option(
        help="Also write the per-epoch metrics (losses, test and validation accuracy, seconds) to this CSV file,"
        " rewritten as epochs end (at most once a second)."
    ),
]
K = Annotated[int | None, typer.Option("--k", min=1, help="Minibatches per exchange (K).")]
# the recipe's most used settings; every setting also goes through --set KEY=VALUE
Lr = Annotated[float | None, typer.Option(help="Learning rate.")]
BatchSize = Annotated[int | None, typer.Option(help="Minibatch size.")]
Lam = Annotated[float | None, typer.Option(help="Weight λ of the passives' gradients.")]
Temperature = Annotated[float | None, typer.Option(help="NT-Xent temperature.")]
KdTemperature = Annotated[float | None, typer.Option(help="Distillation temperature (apfed-kd).")]
KdWeight = Annotated[float | None, typer.Option(help="Distillation weight (apfed-kd).")]
PassiveLosses = Annotated[str | None, typer.Option(help="apfed-m/kd: r or c per passive, e.g. r,c.")]


def _check_policy(on_bad_message: str, round_timeout: float | None = None) -> None:
    if on_bad_message not in ("skip", "fail"):
        raise ConfigError(f"--on-bad-message takes skip or fail, got {on_bad_message!r}")
    if round_timeout is not None and not round_timeout > 0:  # 0 s would drop every training reply
        raise ConfigError(
            f"--round-timeout must be a positive number of seconds (leave it out for no deadline), got {round_timeout}"
        )


def _safety(encrypt: bool, on_bad_message: str, round_timeout: float | None, **checkpoints):
    _check_policy(on_bad_message, round_timeout)
    from apfed.runner import Safety

    if round_timeout is not None and on_bad_message == "fail":
        on_bad_message = "skip"  # a deadline exists to go on without the late party
    return Safety(encrypt, on_bad_message, round_timeout, **checkpoints)


def _check_data_options(dataset, views, data, data_dir, default="handwritten") -> None:
    """The data options' mistakes that show without any data: found in a blink, before torch is imported."""
    from apfed.api import check_data_options

    check_data_options(dataset, views, data, data_dir, default)


def _dataset(dataset, views, active, data, data_dir, id_column, label_column, passives, overlap, test_fraction):
    """The dataset and active view the data options name (handwritten by default), its log lines on stderr."""
    from apfed.api import load_dataset

    return load_dataset(
        dataset,
        views=views,
        active=active,
        data=data,
        data_dir=data_dir,
        id_column=id_column,
        label_column=label_column,
        log=lambda m: typer.echo(m, err=True),
        passives=passives,
        overlap=overlap,
        test_fraction=test_fraction,
    )


def _config(preset: str, sets: list[str] | None, **options):
    """Preset, then the explicit options, then ``--set KEY=VALUE`` pairs (the last word wins)."""
    from apfed.config import make_config, parse_overrides

    kw = {k: v for k, v in options.items() if v is not None}
    kw.update(parse_overrides(sets or []))
    _check_device(kw.get("device", "cpu"))
    return make_config(preset, **kw)


def _output_dir(path: Path) -> Path:
    """Create an output directory before any long work: a bad path fails at once, and nothing computed is lost."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the output directory {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"cannot write to the output directory {path}")
    return path


def _output_file(path: Path, keep: dict[str, list[str] | Path | None] | None = None) -> Path:
    """As ``_output_dir``, for a file to be written later. ``keep``: files the command reads (by what they are),
    which the output must not overwrite."""
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give a file name")
    for what, paths in (keep or {}).items():
        for p in paths if isinstance(paths, list) else [paths]:  # --data gives a list, the other options a path
            if p is not None and path.exists() and Path(p).exists() and os.path.samefile(path, p):
                raise ConfigError(f"{path} is the {what}; refusing to overwrite it (give another output path)")
    _output_dir(path.parent)
    return path


def _metrics_file(path: Path | None, model: Path | None, data: list[str] | None) -> None:
    """Check a --metrics path before training: writable, and neither an input nor the model file."""
    if path is None:
        return
    if model is not None and path.resolve() == model.resolve():
        raise ConfigError(f"--metrics and --out are the same file ({path}); give the metrics a file of their own")
    _output_file(path, {"input data": data})


def _history_writer(path: Path | None, resume: bool = False) -> HistoryWriter | None:
    """The writer of --metrics (None without it); imported only when asked, as the CLI imports lazily."""
    from apfed.history_file import HistoryWriter

    return HistoryWriter(path, resume, warn=lambda m: typer.echo(f"warning: {m}", err=True)) if path else None


def _check_device(device: str) -> None:
    from apfed.api import check_device

    check_device(device, "--device cuda", "--device cpu")


@app.command()
def evaluate(
    dataset: Dataset = None,
    views: Views = None,
    active: Active = None,
    passives: Passives = None,
    overlap: Overlap = None,
    test_fraction: TestFraction = None,
    data: Data = None,
    data_dir: DataDir = None,
    id_column: IdColumn = "id",
    label_column: LabelColumn = "label",
    methods: Annotated[
        str,
        typer.Option(
            help="Comma-separated: local, apfed-r, apfed-c, apfed-m, apfed-kd, tvfl, centralized; a method may take"
            " its own settings, each variant a row: 'local,apfed-c[lam=0.5],apfed-c[lam=2,temperature=0.5]'; a grid:"
            " 'apfed-c[lam=0.5|1|2]'."
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
    set_: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)] = None,
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
):
    """Compare methods on one dataset; write results.json, results.md and results.png to --out."""
    from apfed.config import parse_method_list, variant_config

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
    if folds is not None and (seeds is not None or resplit or test_fraction is not None):
        raise ConfigError(
            "--folds makes the splits, one seed per fold: leave out --seeds, --resplit and --test-fraction"
        )
    if (resplit or folds) and overlap is not None:
        what = "--resplit" if resplit else "--folds"
        raise ConfigError(f"{what} cannot go with --overlap: an overlap study draws the passives' rows from one split")
    seeds = folds or seeds or 3
    _output_dir(out)
    from apfed.evaluate import evaluate as run_eval

    ds, a = _dataset(dataset, views, active, data, data_dir, id_column, label_column, passives, overlap, test_fraction)
    from apfed.api import check_run

    for m in chosen:
        check_run(ds, a, variant_config(cfg, m))
    safety = _safety(encrypt, on_bad_message, None)
    command = shlex.join(["apfed", *sys.argv[1:]])
    options = {"jobs": jobs, "safety": safety, "resume": resume, "command": command, "resplit": resplit}
    options["folds"] = folds or 0
    run_eval(ds, a, chosen, seeds, cfg, out, preset, **options)


@app.command()
def train(
    method: Annotated[
        str, typer.Option(help="A standalone method: local, apfed-r, apfed-c, apfed-m, apfed-kd.")
    ] = "apfed-kd",
    out: Annotated[Path, typer.Option(help="Where to write the standalone model file.")] = Path("model.safetensors"),
    dataset: Dataset = None,
    views: Views = None,
    active: Active = None,
    passives: Passives = None,
    overlap: Overlap = None,
    test_fraction: TestFraction = None,
    data: Data = None,
    data_dir: DataDir = None,
    id_column: IdColumn = "id",
    label_column: LabelColumn = "label",
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
    set_: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)] = None,
    metrics: Metrics = None,
):
    """Train one method and write the active party's standalone model."""
    from apfed.config import STANDALONE

    if method in STANDALONE and not STANDALONE[method]:
        raise ConfigError(
            f"{method} needs every party at prediction time, so it yields no standalone model; "
            "choose local, apfed-r, apfed-c, apfed-m or apfed-kd"
        )
    cfg = _config(
        preset,
        set_,
        epochs=epochs,
        device=device,
        method=method,
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

    ds, a = _dataset(dataset, views, active, data, data_dir, id_column, label_column, passives, overlap, test_fraction)
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
        task = progress.add_task(f"{method} on {ds.name}", total=cfg.epochs)

        def on_epoch(row: dict) -> None:
            progress.update(task, advance=1, description=f"{method} {epoch_label(row)}")
            if history:
                history(row)

        r = run(ds, a, cfg, on_epoch=on_epoch, log=lambda m: progress.console.log(m), safety=safety)
        progress.update(task, total=len(r.history), completed=len(r.history))  # an early stop ends the bar too
    r.model.save(out)
    if history:
        history.finish(r.history)
    if r.faults:
        console.print(f"{len(r.faults)} passive contribution(s) skipped (late or bad replies); see the log above")
    from apfed.report import final_note, untested_line

    if r.accuracy is None:
        console.print(f"{untested_line(r.final)}; wrote {out}")
    else:
        console.print(
            f"test accuracy {r.final['accuracy']:.2f} % (macro-F1 {r.final['macro_f1']:.2f}{final_note(r.final)});"
            f" wrote {out}"
        )


@app.command()
def simulate(
    dataset: Dataset = None,
    views: Views = None,
    active: Active = None,
    passives: Passives = None,
    overlap: Overlap = None,
    test_fraction: TestFraction = None,
    data: Data = None,
    data_dir: DataDir = None,
    id_column: IdColumn = "id",
    label_column: LabelColumn = "label",
    method: Annotated[str, typer.Option(help="apfed-r, apfed-c, apfed-m, apfed-kd or tvfl.")] = "apfed-c",
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
    set_: Annotated[list[str] | None, typer.Option("--set", help=SET_HELP)] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the standalone model file.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show Flower's own log.")] = False,
    metrics: Metrics = None,
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
    task = progress.add_task(f"{method} over Flower simulation", start=False)

    def on_start(epochs: int) -> None:  # the data and settings are checked: the bar shows from here
        progress.update(task, total=epochs)
        progress.start()
        progress.start_task(task)

    def on_epoch(row: dict) -> None:
        progress.update(task, advance=1, description=f"{method} {epoch_label(row)}")
        if history:
            history(row)

    options = {"lr": lr, "batch_size": batch_size, "lam": lam, "temperature": temperature}
    options |= {"kd_temperature": kd_temperature, "kd_weight": kd_weight, "passive_losses": passive_losses}
    recipe = [f"{key}={value}" for key, value in options.items() if value is not None]  # as each node reads --set
    try:
        r = run_sim(
            method,
            dataset=dataset,
            views=views,
            active=active,
            passives=passives,
            overlap=overlap,
            test_fraction=test_fraction,
            data=data,
            data_dir=data_dir,
            id_column=id_column,
            label_column=label_column,
            preset=preset,
            seed=seed,
            epochs=epochs,
            batches_per_round=batches_per_round,
            pipeline=pipeline,
            device=device,
            sets=[*recipe, *(set_ or [])],  # --set comes last and wins, as elsewhere
            model_out=out,
            verbose=verbose,
            on_start=on_start,
            on_epoch=on_epoch,
        )
        progress.update(task, total=len(r["history"]), completed=len(r["history"]))  # an early stop ends the bar too
        if history:
            history.finish(r["history"])
    finally:
        if progress.live.is_started:  # stopping a bar that never showed prints an empty line
            progress.stop()
    from apfed.report import final_note, untested_line

    n_passives = r["passives"]
    if r["accuracy"] is None:
        tested = untested_line(r["final"])
    else:
        mean = "" if "best_epoch" in r["final"] else f"last-{len(r['history'][-10:])}-epoch mean {r['accuracy']:.2f}"
        tested = (
            f"test accuracy {r['final']['accuracy']:.2f} %"
            f" ({(mean + final_note(r['final'])).removeprefix(', ').removeprefix('; ')})"
        )
    typer.echo(
        f"{method} over Flower simulation, {n_passives} passive(s): {tested}, "
        f"{r['wire']['messages']} messages, {r['wire']['bytes'] / 1e6:.1f} MB"
    )
    if out:
        typer.echo(f"wrote {out}", err=True)


def _read_input(
    path: Path, model, id_column: str, required: bool = False, label_column: str | None = None
) -> tuple[np.ndarray | None, np.ndarray]:
    """The IDs (None when the input has no ``id_column``; an error if ``required``) and the feature rows; a
    ``label_column`` is never read as a feature."""
    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    if path.suffix.lower() == ".npz":
        from apfed.data.files import open_npz

        z = open_npz(path)
        if "X" not in z.files:
            raise DataError(f"{path}: an NPZ input needs a feature array named 'X'")
        if required and id_column not in z.files:
            raise DataError(f"{path}: no ID array {id_column!r} (arrays: {', '.join(z.files)})")
        ids = np.asarray(z[id_column]).astype(str) if id_column in z.files else None
        try:
            X = np.asarray(z["X"], dtype=np.float32)
        except (ValueError, TypeError):
            hint = " (its encoded features; or give a CSV file with its categorical columns as text)"
            raise DataError(f"{path}: the feature array 'X' must be numeric{hint if model.encoding else ''}") from None
        _check_finite(path, X, ids, None, model.preprocessor.missing)
        return ids, X
    from apfed.data.files import read_csv_columns, read_csv_header

    header = read_csv_header(path)
    if required and id_column not in header:
        more = ", ..." if len(header) > 8 else ""
        raise DataError(f"{path}: no ID column {id_column!r} (columns: {', '.join(header[:8])}{more})")
    try:
        take, positional = model.feature_positions(header, skip=(id_column, label_column or id_column))
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    with_id = [header.index(id_column)] if id_column in header else []
    categorical = model.encoding.categories if model.encoding else {}
    text = [j for j, c in zip(take, model.raw_columns, strict=False) if c in categorical]
    numeric = [j for j in take if j not in text]
    strings, X, _ = read_csv_columns(path, header, with_id + text, numeric)
    if positional:  # after the read: a file that fails says one line, the error
        typer.echo(
            f"warning: {path}: no column is named as in training; its {len(take)} other columns were read in order"
            " as the model's features",
            err=True,
        )
    ids = strings[0] if with_id else None
    if model.encoding:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            X = model.encode(X, {header[j]: v for j, v in zip(text, strings[len(with_id) :], strict=True)})
        for w in caught:
            typer.echo(f"warning: {path}: {w.message}", err=True)
    names = model.columns if model.encoding else [header[j] for j in take]
    _check_finite(path, X, ids, names, model.preprocessor.missing)
    return ids, X


def _check_finite(
    path: Path, X: np.ndarray, ids: np.ndarray | None, names: list[str] | None, missing: list[int]
) -> None:
    """A prediction needs every feature but those the model fills (``missing``: features that had missing values
    in training): name the first row (CSV: its line, the header being line 1) and column that lack one, and how
    many rows do."""
    from apfed.data.views import first_nonfinite

    found = first_nonfinite(X, missing_ok=missing)
    if found is None:
        return
    r, c, n = found
    where = (f"line {r + 2}" if names else f"row {r}") + (f" (id {ids[r]})" if ids is not None else "")
    column = f"column {names[c]!r}" if names else f"feature {c}"
    more = f"; {n} rows lack a feature" if n > 1 else ""
    if np.isinf(X.reshape(len(X), -1)[r, c]):
        raise DataError(f"{path}: {where}, {column}: an infinite value, and the model needs every feature{more}")
    raise DataError(
        f"{path}: {where}, {column}: no value (empty, NA or NaN); training had none missing in this column, so the"
        f" model needs it{more}"
    )


@app.command()
def predict(
    model: Annotated[Path, typer.Option(help="Standalone model file from 'apfed train'.")],
    input: Annotated[Path, typer.Option("--input", help="Active-view CSV (or NPZ with 'X').")],
    output: Annotated[Path, typer.Option(help="Where to write the predictions CSV.")] = Path("predictions.csv"),
    id_column: Annotated[
        str | None,
        typer.Option(help="ID column to carry into the output (default: 'id' when the input has one)."),
    ] = None,
    threshold: Annotated[str | None, typer.Option(help=THRESHOLD_HELP)] = None,
):
    """Predict from the active party's data alone: no passive party, no Flower, no network."""
    from apfed.scoring import parse_threshold, thresholded
    from apfed.standalone import StandaloneModel

    m = StandaloneModel.load(model)
    cut = None if threshold is None else parse_threshold(threshold, m.class_names)
    _output_file(output, {"input file": input, "model file": model})
    required, id_column = id_column is not None, id_column or "id"
    ids, X = _read_input(input, m, id_column, required)
    proba = m.predict_proba(X)
    pred = m.classes_[proba.argmax(1) if cut is None else thresholded(proba, *cut)]
    from apfed.checkpoint import atomic_file

    with atomic_file(output) as tmp, tmp.open("w", newline="") as f:  # a failed write keeps an earlier file
        w = csv.writer(f)
        w.writerow(([id_column] if ids is not None else []) + ["prediction"] + [f"p_{c}" for c in m.class_names])
        for i in range(len(pred)):
            w.writerow(([ids[i]] if ids is not None else []) + [pred[i]] + [f"{p:.6f}" for p in proba[i]])
    typer.echo(f"wrote {len(pred)} predictions to {output}", err=True)


def _read_labels(path: Path, label_column: str, id_column: str | None) -> tuple[np.ndarray | None, np.ndarray]:
    """A file's label column as text, and its ID column (with ``id_column``: an error when it is missing)."""
    if not path.is_file():
        raise DataError(f"labels file not found: {path}")
    if path.suffix.lower() == ".npz":
        from apfed.data.files import open_npz

        z = open_npz(path)
        for name, what in ((label_column, "label"), (id_column, "ID")):
            if name is not None and name not in z.files:
                raise DataError(f"{path}: no {what} array {name!r} (arrays: {', '.join(z.files)})")
        labels = np.asarray(z[label_column])
        if labels.ndim != 1:
            raise DataError(f"{path}: the label array {label_column!r} must be 1-D, got shape {labels.shape}")
        return (np.asarray(z[id_column]).astype(str) if id_column else None), labels.astype(str)
    from apfed.data.files import read_csv_columns, read_csv_header

    header = read_csv_header(path)
    for name, what in ((label_column, "label"), (id_column, "ID")):
        if name is not None and name not in header:
            more = ", ..." if len(header) > 8 else ""
            raise DataError(f"{path}: no {what} column {name!r} (columns: {', '.join(header[:8])}{more})")
    wanted = [header.index(label_column)] + ([header.index(id_column)] if id_column else [])
    strings, _, _ = read_csv_columns(path, header, wanted, [])
    return (strings[1] if id_column else None), strings[0]


@app.command()
def score(
    model: Annotated[Path, typer.Option(help="Standalone model file from 'apfed train'.")],
    input: Annotated[Path, typer.Option("--input", help="Active-view CSV (or NPZ with 'X') with known labels.")],
    label_column: Annotated[
        str, typer.Option(help="The labels' column (in --labels when given, else in --input).")
    ] = "label",
    labels: Annotated[
        Path | None,
        typer.Option(help="A separate CSV or NPZ of IDs and labels, matched to --input's rows by --id-column."),
    ] = None,
    id_column: Annotated[
        str | None, typer.Option(help="ID column (default: 'id' when the input has one; needed with --labels).")
    ] = None,
    importance: Annotated[
        bool,
        typer.Option(
            "--importance",
            help="Also rank the model's columns: the accuracy lost when a column's values are shuffled across the"
            " rows (tabular models).",
        ),
    ] = False,
    repeats: Annotated[int, typer.Option(min=1, help="Shuffles per column for --importance.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of --importance's shuffles.")] = 0,
    threshold: Annotated[str | None, typer.Option(help=THRESHOLD_HELP)] = None,
    against: Annotated[
        Path | None,
        typer.Option(
            help="Another standalone model to compare with --model on the same rows (the model in use against a new"
            " one): both scored, the accuracy difference with its 95 % interval, and McNemar's exact test."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON (for scripts).")] = False,
):
    """Score a standalone model on labelled rows of the active party's own data: accuracy, F1, ROC-AUC, each
    class's precision and recall, and the confusion matrix. Rows without a label are left out."""
    import json

    from apfed.data.encoding import is_missing
    from apfed.scoring import label_indices, paired_comparison, parse_threshold, predictions, score_report
    from apfed.standalone import StandaloneModel

    m = StandaloneModel.load(model)
    cut = None if threshold is None else parse_threshold(threshold, m.class_names)
    other = None if against is None else StandaloneModel.load(against)
    other_cut = None
    if threshold is not None and other is not None:
        try:
            other_cut = parse_threshold(threshold, other.class_names)
        except DataError as e:
            raise DataError(f"{e} (the --against model)") from None
    if importance and m.spec["kind"] != "tabular":
        raise ConfigError("--importance ranks the columns of a tabular model; this model reads an image strip")
    required, id_column = id_column is not None or labels is not None, id_column or "id"
    ids, X = _read_input(input, m, id_column, required, None if labels else label_column)
    notes = []  # said once the rows are scored: before, an error is the only line
    if labels is None:
        _, y = _read_labels(input, label_column, None)
    else:
        label_ids, label_values = _read_labels(labels, label_column, id_column)
        found = dict(zip(label_ids.tolist(), label_values.tolist(), strict=True))
        if len(found) < len(label_ids):
            raise DataError(f"{labels}: the ID column {id_column!r} has duplicate values")
        y = np.asarray([found.get(i, "") for i in ids.tolist()], dtype=str)
        if not (matched := len(set(ids.tolist()) & found.keys())):
            raise DataError(f"no ID of {input} is in {labels} (ID column {id_column!r})")
        notes.append(f"{labels}: labels for {matched:,} of the {len(ids):,} rows of {input}")
    unlabelled = is_missing(y)
    if unlabelled.all():
        raise DataError(f"{labels or input}: no row has a label in column {label_column!r}")
    if unlabelled.any():
        n = int(unlabelled.sum())
        notes.append(
            f"warning: {n:,} row{'s have' if n > 1 else ' has'} no label and {'are' if n > 1 else 'is'} left out"
        )
    keep = ~unlabelled
    index, unseen = label_indices(y[keep], m.class_names)
    proba = m.predict_proba(X[keep])
    report = score_report(index, proba, m.class_names, unseen, cut)
    if other is not None:  # the same rows of the same file, each model reading its own columns
        _, X_other = _read_input(input, other, id_column, required, None if labels else label_column)
        other_index, other_unseen = label_indices(y[keep], other.class_names)
        other_proba = other.predict_proba(X_other[keep])
        other_report = score_report(other_index, other_proba, other.class_names, other_unseen, other_cut)
        right = predictions(proba, cut) == index  # an unseen label's index is past every class: never right
        other_right = predictions(other_proba, other_cut) == other_index
        report["against"] = {
            "model": str(against),
            "metrics": other_report["metrics"],
            "comparison": paired_comparison(right, other_right),
        }
    if unseen:
        counts = list(report["unseen_labels"].items())
        shown = ", ".join(f"{n!r} ({c:,} row{'s' if c > 1 else ''})" for n, c in counts[:5])
        shown += f" and {len(counts) - 5} more" if len(counts) > 5 else ""
        notes.append(f"warning: labels that are no class of the model count as wrong: {shown}")
    for line in notes:
        typer.echo(line, err=True)
    trained = m.provenance.get("test_accuracy")
    if trained is not None:
        report["training_test_accuracy"] = trained
    if importance:
        report["importance"] = _importance(m, X[keep], y[keep], repeats, seed)
    if as_json:
        typer.echo(json.dumps({"model": str(model), "input": str(input), **report}, indent=2))
        return
    from apfed.report import score_tables, table_console

    console = table_console()
    for t in score_tables(report, f"{model.name} on {input.name}", repeats, model.name):
        console.print(t)
    if trained is not None:
        rows = m.provenance.get("test_rows")
        on = f" on its {rows:,} test rows" if isinstance(rows, int) else ""
        console.print(f"At the end of training the model scored {trained:.2f} %{on}.")
    elif m.provenance.get("test_rows") == 0:
        console.print("The model trained on every labelled row it had (test fraction 0): these rows are its test.")


def _importance(m, X: np.ndarray, y: np.ndarray, repeats: int, seed: int) -> list[dict]:
    """The model's ``permutation_importance``, with a progress bar on stderr."""
    from rich.console import Console
    from rich.progress import Progress

    columns = len(m.raw_columns) or m.n_features
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"shuffling {columns} columns {repeats}x", total=columns)
        return m.permutation_importance(X, y, repeats, seed, lambda: progress.advance(task))


@app.command()
def export(
    model: Annotated[Path, typer.Option(help="Standalone model file.")],
    onnx: Annotated[Path, typer.Option(help="Where to write the ONNX model (raw features in, probabilities out).")],
):
    """Export a standalone model to ONNX."""
    from apfed.standalone import StandaloneModel

    m = StandaloneModel.load(model)
    _output_file(onnx, {"model file": model})
    try:
        m.export_onnx(onnx)
    except ImportError as e:
        raise ApfedError(f"ONNX export needs the onnx extra: pip install 'apfed[onnx]' ({e})") from None
    typer.echo(f"wrote {onnx}", err=True)


@app.command()
def info(
    model: Annotated[Path, typer.Option(help="Standalone model file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON (for scripts).")] = False,
):
    """Show what a standalone model takes (view, features, classes) and where it came from (method, data, run)."""
    import hashlib
    import json

    from apfed.standalone import StandaloneModel

    d = StandaloneModel.load(model).describe()
    d["file"] = {"path": str(model), "bytes": model.stat().st_size}
    d["file"]["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    typer.echo("\n".join(f"{k:<15} {v}" for k, v in _model_summary(d).items()))


def _epochs_line(cfg: dict, p: dict) -> str:
    """``60 epochs``; ``29 of 60 epochs (stopped early), the model of epoch 18 (best on the validation rows)``."""
    planned, run = cfg.get("epochs", "?"), p.get("epochs_run")
    epochs = "epoch" if planned == 1 else "epochs"
    line = f"{planned} {epochs}" if run is None or run == planned else f"{run} of {planned} epochs (stopped early)"
    if "best_epoch" in p:
        line += f", the model of epoch {p['best_epoch']} (best on the validation rows)"
    return line


def _table_lines(d: dict) -> dict[str, str]:
    """``apfed info``'s lines on how a model reads a table: its raw columns (categorical ones) and missing values."""
    lines = {}
    if enc := d.get("encoding"):
        cats = enc["categories"]
        cols = [f"{c} (categorical, {len(cats[c])} values)" if c in cats else c for c in enc["columns"]]
        lines["reads columns"] = f"{len(cols)}: " + ", ".join(cols[:8]) + (", ..." if len(cols) > 8 else "")
    if filled := d.get("fills_missing"):
        shown = ", ".join(filled[:8]) + (", ..." if len(filled) > 8 else "")
        lines["missing values"] = f"filled with the training mean in {shown}; missing elsewhere is an error"
    return lines


def _model_summary(d: dict) -> dict[str, str]:
    """The lines of ``apfed info``: the ones a user checks before predicting, then the provenance."""
    p, cfg, cols = d["provenance"], d["config"], d["columns"]
    shown = ", ".join(cols[:8]) + (f", ... ({len(cols)} in all)" if len(cols) > 8 else "") if cols else "(no names)"
    lines = {
        "file": f"{d['file']['path']} ({d['file']['bytes']:,} bytes, sha256 {d['file']['sha256'][:16]}...)",
        "format": f"{d['format']} v{d['format_version']}",
        "view": f"{d['view_name'] or '?'}: {d['spec']['kind']}, shape {tuple(d['spec']['shape'])}",
        "features": f"{d['n_features']}: {shown}",
        **_table_lines(d),
        "classes": f"{len(d['class_names'])}: {', '.join(map(str, d['class_names'][:20]))}"
        + (", ..." if len(d["class_names"]) > 20 else ""),
        "method": f"{cfg.get('method', '?')}, seed {cfg.get('seed', '?')}, {_epochs_line(cfg, p)}",
        "parameters": f"{d['parameters']:,}",
    }
    if "test_accuracy" in p:
        auc = f", ROC-AUC {p['test_roc_auc']:.4f}" if "test_roc_auc" in p else ""
        when = f"the model of epoch {p['best_epoch']}" if "best_epoch" in p else "end of training"
        lines["test accuracy"] = f"{p['test_accuracy']:.2f} %{auc} (the active party's test rows, {when})"
    elif p.get("test_rows") == 0:
        lines["test accuracy"] = "none: trained on every labelled row (test fraction 0); apfed score tests it"
    if "calibration_temperature" in p:
        t = p["calibration_temperature"]
        lines["calibrated"] = f"temperature {t:.3f} on the validation rows (its logits are divided by it)"
    if "passives" in p:
        names = ", ".join(p["passives"]) or "none"
        lines["trained with"] = f"{len(p['passives'])} passive(s): {names}"
    if "train_rows" in p:
        apart = p.get("unmatched_validation_rows", 0)  # validation rows among those that some passive lacks
        val = f"{p['validation_rows']:,} validation, " if p.get("validation_rows") and not apart else ""
        lines["rows"] = f"{p['train_rows']:,} training, {val}{p['test_rows']:,} test (aligned with every passive)"
        if p.get("unmatched_train_rows"):
            lines["rows"] += f"; {p['unmatched_train_rows']:,} more training rows that some passive lacks"
        if apart:
            aligned = p["validation_rows"] - apart
            lines["rows"] += (
                f"; {p['validation_rows']:,} validation rows ({aligned:,} aligned with every passive, {apart:,} that"
                " some passive lacks)"
            )
    for key, label in (("dataset", "data"), ("transport", "transport"), ("run_id", "run id")):
        if key in p:
            lines[label] = str(p[key])
    if "trained_at" in p:
        lines["trained"] = f"{p['trained_at']} with apfed {p.get('apfed_version', '?')}"
    return lines


@app.command()
def bench(
    device: Device = "cpu",
    repeats: Annotated[
        int,
        typer.Option(
            min=1,
            help="Timed epochs per figure (medians; 5x for handwritten's short epochs); Flower adds a start-up epoch.",
        ),
    ] = 3,
    quick: Annotated[bool, typer.Option("--quick", help="A small grid (a smoke run, not a report to quote).")] = False,
    only: Annotated[
        str,
        typer.Option(
            help="Comma-separated sections to run: epoch, wire, scaling, flower, inference, and paper (the paper"
            " preset's 300 epochs, 3 seeds: for a GPU; not run unless named)."
        ),
    ] = "epoch,wire,scaling,flower,inference",
    out: Annotated[Path, typer.Option(help="Report directory.")] = Path("benchmarks/results"),
):
    """Measure epoch time against bare compute, wire cost, scaling and inference; write a report and plots."""
    from apfed.bench import SECTIONS, run_bench, write_report

    _config("default", None, device=device)  # a clear error when CUDA is asked for and missing
    sections = tuple(x.strip() for x in only.split(",") if x.strip())
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown or not sections:
        raise ConfigError(f"unknown --only section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    _output_dir(out)
    report = run_bench(device, repeats, quick, sections, log=lambda line: typer.echo(line, err=True))
    md, written = write_report(report, out, sections, quick)
    typer.echo("\n".join(md))
    typer.echo("wrote " + ", ".join(str(p) for p in written), err=True)


@app.command()
def settings(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the tables of docs/settings.md.")] = False,
) -> None:
    """List every training setting that --set takes, with each preset's value and what it does."""
    from apfed import settings as explained

    if markdown:
        typer.echo(explained.markdown(), nl=False)
        return
    from rich.table import Table

    from apfed.report import table_console

    console = table_console()
    console.print("Training settings: --set KEY=VALUE (repeatable) in evaluate, train, simulate and deploy.py.")
    for title, note, entries in explained.rows():
        t = Table(title=title, caption=note or None, title_justify="left", min_width=100)
        t.add_column("key", no_wrap=True)
        for name in explained.preset_names():
            t.add_column(name, no_wrap=True)
        t.add_column("what it does")
        for key, values, what in entries:
            t.add_row(key, *values, what.replace("`", ""))
        console.print(t)


@app.command(rich_help_panel="Deployment")
def certs(
    host: Annotated[
        list[str],
        typer.Option(help="A name or IP address the passives dial to reach the SuperLink (repeatable)."),
    ],
    out: Annotated[Path, typer.Option(help="Directory for ca.crt, ca.key, server.pem and server.key.")] = Path("pki"),
    days: Annotated[int, typer.Option(min=1, max=3650, help="Days the server certificate is valid.")] = 365,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing server certificate (renewal).")] = False,
):
    """Active party: make a CA (once; later runs reuse it) and the SuperLink's TLS server certificate for --host."""
    from apfed.pki import write_certs

    made = write_certs(out, host, days, force)
    ca = "new" if made.new_ca else "existing, reused"
    typer.echo(f"CA certificate {made.ca} ({ca}; valid until {made.ca_until:%Y-%m-%d}): give it to every passive party")
    if made.new_ca:
        typer.echo(f"CA key {made.ca_key}: it signs the server certificates; keep it to yourself, offline if you can")
    typer.echo(
        f"server certificate {made.cert} for {', '.join(made.hosts)} (valid until {made.cert_until:%Y-%m-%d}),"
        f" key {made.key}: for the SuperLink only"
    )
    typer.echo(
        f"start it with: flower-superlink --ssl-ca-certfile {made.ca} --ssl-certfile {made.cert}"
        f" --ssl-keyfile {made.key} --enable-supernode-auth --disable-runtime-dependency-installation"
    )


@app.command(rich_help_panel="Deployment")
def nodekey(
    out: Annotated[Path, typer.Argument(help="Where to write the private key; the public key goes to OUT.pub.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing key pair.")] = False,
):
    """Passive party: make the SuperNode's key pair (EC P-256, OpenSSH); print the public key's fingerprint."""
    from apfed.pki import write_node_key

    private, public, fingerprint = write_node_key(out, force)
    typer.echo(fingerprint)
    typer.echo(
        f"wrote {private} (private: it stays on this node, --auth-supernode-private-key) and {public}: send {public}"
        f" to the active party, which registers it (flwr supernode register {public.name} CONNECTION); read each"
        " other the fingerprint above to check it is this key",
        err=True,
    )


@app.command(rich_help_panel="Deployment")
def worker(
    socket_path: Annotated[
        Path,
        typer.Option("--socket", help="Where to listen: the SuperNode's node config names it (worker-socket='PATH')."),
    ],
    node_config: Annotated[
        str,
        typer.Option(
            help="This party's settings, as a SuperNode's --node-config: party='passiveN' data='FILE'"
            " id-column='C', and its limits, audit-log, checkpoint-dir, seal-key, device (or a .toml file)."
        ),
    ],
):
    """Passive party: serve its data to its SuperNode from this installation's apfed, not the app's code."""
    import signal
    from datetime import datetime

    from clients.flower_client import passive_from_node_config
    from clients.passive_worker import party_config, serve_party, serving

    nc = party_config(node_config)
    socket_path = socket_path.absolute()
    if not socket_path.parent.is_dir():
        raise DataError(f"directory {socket_path.parent} does not exist (--socket)")
    if len(str(socket_path)) > 100:
        raise ConfigError(f"--socket {socket_path}: a Unix socket path must be under about 100 characters")
    if serving(socket_path):
        raise ConfigError(f"a worker already serves at {socket_path}; stop it first, or give another --socket")
    client = passive_from_node_config(nc)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill`: leave through the finally that removes the socket

    def show(msg) -> None:
        if msg.kind in ("setup", "finish"):
            what = "set-up of" if msg.kind == "setup" else "end of"
            typer.echo(f"{datetime.now():%H:%M:%S} {what} run {msg.run_id} from {msg.sender}", err=True)

    typer.echo(
        f"apfed worker: {client.name}, {len(client.data.ids):,} rows; listening on {socket_path}"
        f" (its SuperNode's node config: worker-socket='{socket_path}'); stop with Ctrl-C",
        err=True,
    )
    serve_party(client, socket_path, on_request=show)


@app.command(rich_help_panel="Deployment")
def keygen(
    out: Annotated[Path, typer.Argument(help="Where to write the new private key (PEM, owner-only).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
):
    """Make a party's X25519 key for --encrypt / seal-key; print the fingerprint its peers pin."""
    from protocols.sealing import PartyKey

    if out.exists() and not force:
        raise ConfigError(f"{out} already exists; refusing to overwrite a key (use --force)")
    if not out.parent.is_dir():
        raise DataError(f"directory {out.parent} does not exist")
    key = PartyKey()
    key.save(out)
    typer.echo(key.fingerprint)
    typer.echo(f"wrote {out}; give the fingerprint above to the other parties to pin", err=True)


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@app.command(rich_help_panel="Deployment")
def audit(
    log: Annotated[Path, typer.Argument(help="A passive party's audit log (node config audit-log).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
):
    """Passive party: summarize its audit log, one row per run: who asked what, when, and what it sent."""
    import json

    from clients.audit import read_log, summarize

    runs = summarize(read_log(log))
    if as_json:
        typer.echo(json.dumps(runs, indent=2))
        return
    from rich.table import Table

    from apfed.report import table_console

    t = Table(title=f"{log}: {len(runs)} run(s)", title_justify="left")
    for column in ("run", "party", "asked by", "method", "when (UTC)", "rows shared / IDs offered", "requests"):
        t.add_column(column)
    t.add_column("sent")
    t.add_column("errors sent")
    for r in runs:
        sent = "\n".join(f"{name} {_size(b)}" for name, b in sorted(r.get("bytes_sent", {}).items())) or "-"
        first, last = (str(r.get(k) or "-")[:19].replace("T", " ") for k in ("first", "last"))
        when = first if last == first else f"{first} to {last[11:] if last[:10] == first[:10] else last}"
        errors = r.get("errors", [])
        error = (errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")) if errors else "-"
        rows = f"{r.get('shared_rows', '-')} / {r.get('ids_offered', '-')}"
        t.add_row(
            r["run_id"],
            r.get("party"),
            r.get("active"),
            r.get("method") or "-",
            when,
            rows,
            str(r["requests"]),
            sent,
            error,
        )
    table_console().print(t)


def _data_line(path: Path, id_column: str, label_column: str | None, test_fraction: float = 0.2) -> str:
    """``preflight --data``: read a party's file as its deployment will, and say what it holds."""
    from apfed.data.encoding import describe
    from apfed.data.files import active_party_file, passive_party_file
    from apfed.data.splits import check_test_fraction

    if label_column is None:
        d = passive_party_file(path, id_column)
        what = "a passive party's file"
    else:
        d = active_party_file(path, id_column, label_column, test_fraction=check_test_fraction(test_fraction))
        what = f"the active party's file, {len(d.class_names)} classes"
    notes = "; ".join(line.removeprefix(f"{path.name}: ") for line in describe(path.name, d.view))
    shape = "x".join(map(str, d.view.shape))
    line = f"data {path}: {what}, {len(d.ids)} rows of {shape} features"
    if label_column is not None:
        n_test = len(d.test_rows)
        line += f" ({n_test} held out to test)" if n_test else " (every row trains: test fraction 0)"
    return line + (f"; {notes}" if notes else "")


@app.command(rich_help_panel="Deployment")
def preflight(
    seal_key: Annotated[Path | None, typer.Option(help="This party's X25519 key (apfed keygen).")] = None,
    pin: Annotated[list[str] | None, typer.Option(help="A pinned fingerprint, NAME=sha256:... (repeatable).")] = None,
    cert: Annotated[list[Path] | None, typer.Option(help="A PEM certificate (CA or server; repeatable).")] = None,
    key: Annotated[list[Path] | None, typer.Option(help="A TLS or SuperNode private key (repeatable).")] = None,
    port: Annotated[list[int] | None, typer.Option(help="A port this party will listen on (repeatable).")] = None,
    host: Annotated[str, typer.Option(help="The address those ports bind to.")] = "127.0.0.1",
    connect: Annotated[
        str | None,
        typer.Option(
            help="A passive: the SuperLink's Fleet address, HOST:PORT, reached over TLS with the CA of --cert."
        ),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="This party's data file, read as its node (or the ServerApp) will read it.")
    ] = None,
    id_column: Annotated[str, typer.Option(help="--data's ID column.")] = "id",
    label_column: Annotated[
        str | None, typer.Option(help="The active party's label column (a passive's file must not have it).")
    ] = None,
    test_fraction: Annotated[
        float, typer.Option(help="With --label-column: the run config's test-fraction, the split to check.")
    ] = 0.2,
    worker_socket: Annotated[
        str | None,
        typer.Option(help="A passive's SuperNode user: the socket of its own worker (apfed worker), to reach."),
    ] = None,
):
    """Check keys, certificates, pins, ports (and with --connect the SuperLink) before a deployment starts."""
    from apfed import preflight as pf
    from protocols.errors import ProtocolError
    from protocols.sealing import PartyKey, parse_pins

    if seal_key is None and not (pin or cert or key or port or connect or data or worker_socket):
        raise ConfigError(
            "nothing to check: give --seal-key, --pin, --cert, --key, --port, --connect, --data or --worker-socket"
        )
    checked = 0
    try:
        if seal_key is not None:
            fingerprint = PartyKey.load(seal_key).fingerprint
            pf.check_private_to_owner(seal_key)
            typer.echo(f"seal key {seal_key}: {fingerprint} (give this to the other parties to pin)")
            checked += 1
        for name, fingerprint in parse_pins(pin or []).items():
            typer.echo(f"pin {name}: {fingerprint}")
            checked += 1
        for c in cert or []:
            typer.echo(f"certificate {c}: {pf.check_certificate(c)}")
            checked += 1
        authorities = [c for c in cert or [] if pf.is_authority(c)]
        leaves = [c for c in cert or [] if c not in authorities]
        if authorities:
            for c in leaves:
                typer.echo(f"certificate {c}: signed by {pf.check_issued_by(c, authorities)}")
        for k in key or []:
            kind = pf.check_private_key(k)
            pf.check_private_to_owner(k)
            mine = pf.check_key_matches(k, cert) if leaves else None  # a key may belong to a certificate not given
            typer.echo(
                f"private key {k}: {kind}, readable by its owner only" + (f", the key of {mine}" if mine else "")
            )
            checked += 1
        for p in port or []:
            pf.check_port_free(p, host)
            typer.echo(f"port {p} on {host}: free")
            checked += 1
        if data is not None:
            typer.echo(_data_line(data, id_column, label_column, test_fraction))
            checked += 1
        if connect:
            if not authorities:
                raise ConfigError("--connect needs the CA certificate to trust: give it with --cert ca.crt")
            typer.echo(f"SuperLink {connect}: {pf.check_connection(connect, authorities)}")
            checked += 1
        if worker_socket:
            from clients.passive_worker import probe

            probe(worker_socket)
            typer.echo(f"worker {worker_socket}: answers (this user may connect)")
            checked += 1
    except ProtocolError as e:
        raise ConfigError(str(e)) from None
    typer.echo(f"preflight: all {checked} checked are usable")


def main() -> None:
    import click

    try:
        code = app(standalone_mode=False, prog_name="apfed")  # click's usage errors come here, for one line
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.NoArgsIsHelpError as e:  # `apfed` alone: the help, as with --help
        typer.echo(e.ctx.get_help())
        sys.exit(2)
    except click.UsageError as e:  # an unknown option, a missing or malformed value
        see = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        typer.echo(f"error: {e.format_message().rstrip('.')}{see}", err=True)
        sys.exit(e.exit_code)
    except click.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except (ApfedError, ProtocolError) as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except OSError as e:  # a file or socket the user named that the system refused
        if e.errno == errno.EPIPE:  # the reader of our output went away (`apfed settings | head`): nothing to say
            sys.stdout = click.utils.PacifyFlushWrapper(sys.stdout)
            sys.exit(1)
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
