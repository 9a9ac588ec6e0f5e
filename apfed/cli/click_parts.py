"""The parts of click that apfed's CLI uses, taken from the click that typer runs on.

Up to 0.20, typer runs on the ``click`` package. Later versions carry a copy of their own (``typer._click``), and the
``click`` package does not know its contexts, parameters or exceptions: ``click.get_current_context()`` then finds no
context, and ``except click.UsageError`` catches nothing. flwr 1.39 holds typer below 0.21; these names keep the CLI
working under a later Flower that lets typer move on."""

from __future__ import annotations

from typer import Abort, BadParameter
from typer.core import TyperOption as Option  # every option of apfed's commands (a click.Option up to typer 0.20)

try:
    from typer._click import core, exceptions, globals  # noqa: A004 (click's module name)
except ImportError:  # typer <= 0.20
    from click import core, exceptions, globals  # noqa: A004

Command = core.Command
Context = core.Context
ParameterSource = core.ParameterSource
ClickException = exceptions.ClickException
NoArgsIsHelpError = exceptions.NoArgsIsHelpError
UsageError = exceptions.UsageError
get_current_context = globals.get_current_context


def cast_value(option: Option, ctx: Context, value):
    """``value`` converted and checked as ``option`` would take it from the command line (typer 0.21 and later replace
    click's ``type_cast_value`` with a runtime parameter of their own); a ``BadParameter`` where it is not valid."""
    if hasattr(option, "type_cast_value"):
        return option.type_cast_value(ctx, value)
    return option.get_runtime_param().coerce(value, param=option, ctx=ctx)


__all__ = [
    "Abort",
    "BadParameter",
    "ClickException",
    "Command",
    "Context",
    "NoArgsIsHelpError",
    "Option",
    "ParameterSource",
    "UsageError",
    "cast_value",
    "get_current_context",
]
