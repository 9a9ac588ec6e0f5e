"""``apfed leakage``: what each party could infer about the other's data from the messages of a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from apfed.cli.common import (
    Active,
    Data,
    DataDir,
    Dataset,
    Device,
    DpClip,
    DpNoise,
    Epochs,
    IdColumn,
    LabelColumn,
    Passives,
    Preset,
    Task,
    TestFraction,
    Views,
    _check_data_options,
    _config,
    _dataset,
    _output_dir,
    app,
)
from apfed.cli.config_file import ConfigFile, Sets, command_line
from apfed.errors import ConfigError

ATTACKED = ("apfed-r", "apfed-c", "apfed-m", "apfed-kd", "tvfl")  # the methods whose parties exchange messages


@app.command()
def leakage(
    config: ConfigFile = None,
    dataset: Dataset = None,
    views: Views = None,
    active: Active = None,
    passives: Passives = None,
    test_fraction: TestFraction = None,
    data: Data = None,
    data_dir: DataDir = None,
    id_column: IdColumn = "id",
    label_column: LabelColumn = "label",
    task: Task = "classification",
    methods: Annotated[
        str,
        typer.Option(help="Comma-separated methods that exchange messages: apfed-r, apfed-c, apfed-m, apfed-kd, tvfl."),
    ] = "apfed-r,apfed-c,apfed-kd,tvfl",
    seed: Annotated[int, typer.Option(help="Random seed (training, and the rows each attacker knows).")] = 0,
    epochs: Epochs = None,
    preset: Preset = "default",
    device: Device = "cpu",
    dp_clip: DpClip = None,
    dp_noise: DpNoise = None,
    known_labels: Annotated[
        int,
        typer.Option(
            min=1,
            help="Labels per class that the attacking passive knows (of training rows); a regression's: --known-rows.",
        ),
    ] = 4,
    known_rows: Annotated[
        float,
        typer.Option(
            min=0.01, max=0.9, help="Share of training rows whose passive features the attacking active party knows."
        ),
    ] = 0.1,
    set_: Sets = None,
    out: Annotated[Path, typer.Option(help="Report directory (leakage.json, leakage.md).")] = Path("results"),
):
    """What could each party infer about the other's data from a run's messages? Attacks on what crossed."""
    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    wrong = [m for m in chosen if m not in ATTACKED]
    if wrong or not chosen:
        raise ConfigError(
            f"--methods takes {', '.join(ATTACKED)} (local and centralized send no message)"
            + (f"; not {', '.join(map(repr, wrong))}" if wrong else "")
        )
    base = _config(preset, set_, epochs=epochs, device=device, seed=seed, dp_clip=dp_clip, dp_noise=dp_noise)
    _check_data_options(dataset, views, data, data_dir)
    _output_dir(out)
    from dataclasses import replace

    from rich.console import Console
    from rich.progress import Progress

    from apfed.api import check_run
    from apfed.leakage import audit
    from apfed.leakage_report import leakage_markdown, leakage_summary, leakage_table

    ds, a = _dataset(
        dataset, views, active, data, data_dir, id_column, label_column, passives, None, test_fraction, None, task
    )
    cfgs = [replace(base, method=m).validate() for m in chosen]
    for cfg in cfgs:
        check_run(ds, a, cfg)
    console = Console(stderr=True, log_path=False)
    runs = []
    with Progress(console=console) as progress:
        for cfg in cfgs:
            bar = progress.add_task(f"{cfg.method} on {ds.name}", total=cfg.total_epochs)
            runs.append(
                audit(
                    ds,
                    a,
                    cfg,
                    known_labels,
                    known_rows,
                    on_epoch=lambda _row, bar=bar: progress.update(bar, advance=1),
                )
            )
    report = {
        "dataset": ds.name,
        "active_view": ds.views[a].name,
        "command": command_line(),
        "known_labels_per_class": known_labels,
        "known_rows": known_rows,
        "dp": {"clip": base.dp_clip, "noise": base.dp_noise},
        "epochs": base.epochs,
        "seed": seed,
        "runs": runs,
    }
    (out / "leakage.json").write_text(json.dumps(report, indent=1))
    (out / "leakage.md").write_text(leakage_markdown(report))
    table_console = Console()
    table_console.print(leakage_table(report))
    for line in leakage_summary(report):
        table_console.print(line, markup=False, highlight=False)
    console.print(f"wrote {out / 'leakage.json'} and {out / 'leakage.md'}")
