"""The ``apfed`` command line. Each command lives in the module of its kind (``training``: evaluate, train,
simulate; ``models``: predict, score, drift; ``model_info``: export, info; ``tools``: bench, settings; ``leakage``;
``deployment``: certs, nodekey, worker, keygen, audit, preflight), all on the one Typer app of ``common``;
``config_file`` reads ``--config`` TOML files; ``main`` turns a user's mistake into one line and an exit code."""

from __future__ import annotations

import errno
import importlib
import sys

import typer

from apfed.cli.common import app
from apfed.errors import ApfedError
from protocols.errors import ProtocolError

__all__ = ["app", "main"]

for _module in (
    "training",
    "models",
    "model_info",
    "tools",
    "leakage",
    "deployment",
):  # each registers its commands; --help lists them so
    importlib.import_module(f"apfed.cli.{_module}")


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
