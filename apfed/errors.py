"""Errors a user can cause. The CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class ApfedError(Exception):
    """A problem with the user's input, data, configuration or environment."""


class DataError(ApfedError):
    """A data file is missing, malformed, or does not match the others."""


class ConfigError(ApfedError):
    """A configuration value is out of range or inconsistent."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the example scripts: a command-line mistake is one line naming the help to read, as in
    ``apfed`` itself, not argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)
