"""Reading a user's TOML file (``--config``, a deployment's ``recipe``): the table, or one clear line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apfed.errors import ConfigError


def read_toml(path: str | Path, kind: str, taker: str) -> dict[str, Any]:
    """The TOML table in ``path``; a missing, unreadable or malformed file is a ``ConfigError`` naming it (``kind``:
    what the file is, "config"; ``taker``: what takes it, "--config")."""
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {kind} file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory; {taker} takes a TOML file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied (the {kind} file must be readable)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text") from None
