"""What every ``apfed`` command shares: the Typer app, the data and training options, and the checks and
helpers behind them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from apfed.errors import ConfigError

if TYPE_CHECKING:
    from apfed.history_file import HistoryWriter


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
TimeColumn = Annotated[
    str | None,
    typer.Option(
        help="A column of the active party's --data file (dates such as 2024-03-01, or numbers; not a feature): the"
        " latest --test-fraction of the labelled rows by it are the test rows, an out-of-time test.",
    ),
]
Overlap = Annotated[
    float | None,
    typer.Option(
        help="Study a partial overlap: the passives hold only this fraction of the training rows (random, seeded);"
        " the standalone methods also train on the rest (bundled and image sets; --data files match by ID).",
    ),
]
Labelled = Annotated[
    float | None,
    typer.Option(
        help="Study rows with no label: only this share of the training rows keep their label (stratified, seeded);"
        " apfed-r/c/m/kd also train the passives' losses on the others (bundled and image sets; in --data files an"
        " empty label cell marks such a row).",
    ),
]
Task = Annotated[
    str,
    typer.Option(
        help="classification (the labels are classes) or regression (the labels are numbers to predict; --data"
        " files only).",
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
Device = Annotated[str, typer.Option(help="cpu, cuda or cuda:N (the GPU of index N).")]
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


def _dataset(
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
    labelled=None,
    task="classification",
    time_column=None,
):
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
        labelled=labelled,
        task=task,
        time_column=time_column,
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
    try:  # a file actually made there: write permission alone says nothing of a read-only or special file system
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ConfigError(f"cannot write to the output directory {path}: {e.strerror or e}") from None
    return path


def _output_file(path: Path, keep: dict[str, list[str] | Path | None] | None = None) -> Path:
    """As ``_output_dir``, for a file to be written later. ``keep``: files the command reads (by what they are),
    which the output must not overwrite."""
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give a file name")
    if path.exists() and not path.is_file():  # a link to a regular file is one (is_file follows it)
        raise ConfigError(f"{path} is not a regular file (a device, pipe or socket); give a file name")
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


def _method_entry(method: str, passives: str | None) -> tuple[str, list[str], str | None]:
    """``--method`` as ``evaluate --methods`` names a variant, ``apfed-c[lam=0.25,passives=kar]``: the method, its
    settings (``--set`` pairs, applied after the command's own) and the passives (``--passives`` or the variant's)."""
    from apfed.config import method_variant, variant_passives, variant_sets

    base, _ = method_variant(method, "--method")
    own = variant_passives(method)
    if own is not None and passives is not None:
        raise ConfigError(f"--method {method!r} names its passives and so does --passives: give them once")
    return base, variant_sets(method), own if own is not None else passives
