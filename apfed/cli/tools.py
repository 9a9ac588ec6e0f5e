"""``apfed bench`` and ``apfed settings``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from apfed.cli.common import Device, _config, _output_dir, app
from apfed.errors import ConfigError


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
