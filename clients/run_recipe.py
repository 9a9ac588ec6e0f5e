"""A deployment's ``recipe`` run-config key: a TOML file on the active party's host (the ServerApp's) whose keys are
run-config keys, with a ``[set]`` table of training settings; ``apfed info --recipe`` writes one.

Why a key of its own: ``flwr run --run-config`` takes either a TOML file or KEY=VALUE pairs, not both, and only
keys the app declares, so a reviewed recipe could not go with the run's own pairs (data paths, keys, ports).
Precedence, as with ``apfed train --config``: a run-config key whose value differs from the app's default
(``[tool.flwr.app.config]``) wins over the file's; the file's ``[set]`` pairs come before the run config's
``sets``, whose pairs win. Flower passes the run config with the defaults filled in, so a pair that gives a key
its default value cannot be told from no pair: to run a recipe with a key at its default, edit the file."""

from __future__ import annotations

import difflib
import functools
from pathlib import Path
from typing import Any

from apfed.config import parse_overrides, setting_text, split_sets
from apfed.errors import ConfigError
from apfed.toml_file import read_toml

APP_PROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"  # in a deployment: the app bundle's own
LIST_KEYS = ("data", "pins")  # comma-separated in the run config; a list in the file
NOT_IN_RECIPE = ("recipe",)


@functools.cache
def app_defaults() -> dict[str, Any]:
    """The app's declared run config, by key with underscores (``{"epochs": 0, ...}``)."""
    table = read_toml(APP_PROJECT, "app project", "the app")
    declared = table.get("tool", {}).get("flwr", {}).get("app", {}).get("config", {})
    return {k.replace("-", "_"): v for k, v in declared.items()}


def _value(path: str, key: str, value: Any, default: Any) -> Any:
    """The file's ``value`` for ``key`` as the run config would carry it, checked against the default's type."""
    name = key.replace("_", "-")
    if key in LIST_KEYS and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
        want = "true or false"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        want = "a whole number"
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
        want = "a number"
    else:  # a whole number too, as the run config reads active=0 (a view index)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        ok = isinstance(value, str)
        want = "a list of strings or a string" if key in LIST_KEYS else "a string"
    if not ok:
        raise ConfigError(f"{path}: {name!r} takes {want}, got {value!r}")
    return value


def read_recipe(path: str) -> tuple[dict[str, Any], list[str]]:
    """The run-config values (keys with underscores) and the training-setting pairs (``[set]``, or ``sets`` as
    the run config writes it) that the recipe file at ``path`` gives; every mistake one line naming the file."""
    defaults = app_defaults()
    keys = {k for k in defaults if k not in NOT_IN_RECIPE}
    values: dict[str, Any] = {}
    pairs: list[str] | None = None
    for raw, value in read_toml(path, "recipe", "the run config's recipe").items():
        key = raw.replace("-", "_")
        if key in ("set", "sets"):
            if pairs is not None:
                raise ConfigError(f"{path}: 'set' and 'sets' both give training settings; keep one")
            if isinstance(value, dict):
                if any(isinstance(v, dict | list) for v in value.values()):
                    raise ConfigError(f"{path}: each [set] value must be a string, a number or a boolean")
                pairs = [f"{k}={setting_text(v)}" for k, v in value.items()]
            elif isinstance(value, str):
                pairs = split_sets(value)
            else:
                raise ConfigError(f"{path}: {raw!r} takes a table of settings ([set] lr = 0.003) or a string")
            try:
                parse_overrides(pairs)
            except ConfigError as e:
                raise ConfigError(f"{path}: {str(e).replace('--set ', '[set] ', 1)}") from None
            continue
        if key not in keys:
            close = difflib.get_close_matches(key, sorted(keys), n=1)
            hint = f"; did you mean {close[0].replace('_', '-')!r}?" if close else " (see [tool.flwr.app.config])"
            if key in NOT_IN_RECIPE:
                raise ConfigError(f"{path}: {raw!r}: a recipe cannot name another recipe")
            raise ConfigError(f"{path}: {raw!r} is not a run-config key{hint}")
        if key in values:
            raise ConfigError(f"{path}: {raw!r} sets {key.replace('_', '-')} a second time")
        values[key] = _value(path, key, value, defaults[key])
    return values, pairs or []


def apply_recipe(run_config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``run_config`` (Flower's, defaults filled in) with its ``recipe`` file's values under it, and one line
    saying what the file gave and what the run config overrode ("" with no recipe)."""
    rc = {k.replace("-", "_"): v for k, v in run_config.items()}
    path = str(rc.pop("recipe", "") or "")
    if not path:
        return rc, ""
    values, pairs = read_recipe(path)
    defaults = app_defaults()
    given, kept = [], []
    for key, value in values.items():
        if key in rc and rc[key] != defaults.get(key) and rc[key] != value:
            kept.append(f"{key.replace('_', '-')}={rc[key]!r} (the file's {value!r})")
            continue
        rc[key] = value
        given.append(f"{key.replace('_', '-')}={value!r}")
    if pairs:  # the file's first, so that the run config's own win
        rc["sets"] = ",".join([*pairs, *split_sets(str(rc.get("sets", "") or ""))])
        given.append("set " + ", ".join(pairs))
    line = f"recipe {path}: " + ("; ".join(given) or "nothing")
    if kept:
        line += "; the run config's own " + ", ".join(kept)
    return rc, line
