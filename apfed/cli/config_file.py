"""``--config FILE``: a command's options in a TOML file, so a run's recipe can be kept, reviewed and shared. The
file's keys are the command's long options (``batch-size`` or ``batch_size``), read before the command line, whose
options win; ``set`` may be a table of settings."""

from __future__ import annotations

import difflib
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from apfed.cli import click_parts as click  # the click that typer runs on
from apfed.config import setting_text
from apfed.errors import ConfigError
from apfed.toml_file import read_toml

# the options that take a comma-separated list, which a TOML list may give too
COMMA_SEPARATED = ("methods", "passives", "passive_losses")


def _options_by_key(command: click.Command) -> dict[str, click.Option]:
    """Each option the file may set, under its long names with dashes and with underscores."""
    keys = {}
    for p in command.params:
        if isinstance(p, click.Option) and p.name != "config" and not p.hidden:
            for opt in p.opts:
                if opt.startswith("--"):
                    keys[opt[2:]] = keys[opt[2:].replace("-", "_")] = p
    return keys


def read_config(ctx: click.Context, path: Path) -> dict[str, Any]:
    """The options ``path`` sets for ``ctx``'s command, cast and checked as the command line's are, by parameter
    name (click's ``default_map``). A mistake is a ``ConfigError`` naming the file and the key."""
    command = f"apfed {ctx.command.name}"
    table = read_toml(path, "config", "--config")
    keys = _options_by_key(ctx.command)
    values: dict[str, Any] = {}
    for key, value in table.items():
        p = keys.get(key)
        if p is None:
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (see '{command} --help')"
            raise ConfigError(f"{path}: {key!r} is not an option of {command}{hint}")
        if p.name in values:
            raise ConfigError(f"{path}: {key!r} sets --{p.opts[0].lstrip('-')} a second time")
        if p.multiple:
            if isinstance(value, dict) and p.opts == ["--set"]:
                value = [f"{k}={setting_text(v)}" for k, v in value.items()]
            elif not isinstance(value, list):
                value = [value]
        elif p.name in COMMA_SEPARATED and isinstance(value, list):
            value = ",".join(map(str, value))
        elif isinstance(value, list | dict):
            kind = "list" if isinstance(value, list) else "table"
            raise ConfigError(f"{path}: {key!r} takes one value, not a {kind}")
        if p.is_flag and not isinstance(value, bool):
            raise ConfigError(f"{path}: {key!r} is a flag: true or false, got {value!r}")
        if any(isinstance(v, dict | list) for v in (value if p.multiple else [value])):
            raise ConfigError(f"{path}: {key!r}: each value must be a string or a number")
        try:
            values[p.name] = click.cast_value(p, ctx, value)
        except click.BadParameter as e:
            raise ConfigError(f"{path}: {key!r}: {e.message}") from None
    return values


FILE_SETS = "apfed.config_file.sets"  # ctx.meta: the file's [set] pairs, which --set on the command line adds to


def _load(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    if value is not None:  # an eager option: read before every other, so the file's values are their defaults
        values = read_config(ctx, value)
        ctx.default_map = {**(ctx.default_map or {}), **values}
        ctx.meta[FILE_SETS] = list(values.get("set_", ()))
    return value


def _merge_sets(ctx: typer.Context, param: typer.CallbackParam, value: list[str] | None) -> list[str] | None:
    """``--set`` on the command line adds to the file's ``[set]`` table (settings, unlike the other options, are
    not replaced as a whole): the file's pairs first, so that the command line's win."""
    if ctx.meta.get(FILE_SETS) and ctx.get_parameter_source(param.name) is click.ParameterSource.COMMANDLINE:
        return [*ctx.meta[FILE_SETS], *(value or [])]
    return value


SET_HELP = "Any training setting, KEY=VALUE (repeatable); docs/settings.md lists them."
Sets = Annotated[list[str] | None, typer.Option("--set", callback=_merge_sets, help=SET_HELP)]


ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        is_eager=True,
        callback=_load,
        help="A TOML file of this command's options (keys as the long options: epochs = 30, data = \\['a.csv',"
        " 'b.csv'], a \\[set] table of settings); options on the command line win, and --set adds to the table.",
    ),
]


def command_line() -> str:
    """The running command as one line to run again, with the options its ``--config`` file gave written out (the
    file itself may not travel with the report)."""
    ctx = click.get_current_context()
    args = _without("--config", sys.argv[1:])
    if ctx.meta.get(FILE_SETS) and ctx.get_parameter_source("set_") is click.ParameterSource.COMMANDLINE:
        args = _without("--set", args)  # the file's pairs and the command line's, in that order, written out below
        args += [x for v in ctx.params["set_"] for x in ("--set", v)]
    for p in ctx.command.params:
        if p.name == "config" or ctx.get_parameter_source(p.name) is not click.ParameterSource.DEFAULT_MAP:
            continue
        value, opt = ctx.params[p.name], p.opts[0]
        if p.is_flag:
            args += [opt] if value else list(p.secondary_opts[:1])
        else:
            args += [x for v in (value if p.multiple else [value]) for x in (opt, str(v))]
    return shlex.join(["apfed", *args])


def _without(option: str, args: list[str]) -> list[str]:
    """The command line ``args`` without ``option`` and its values (``--set A`` and ``--set=A`` alike)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(f"{option}="):
            out.append(a)
    return out
