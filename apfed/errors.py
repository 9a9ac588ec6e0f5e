"""Errors a user can cause. The CLI prints them as one line and exits non-zero, without a traceback."""


class ApfedError(Exception):
    """A problem with the user's input, data, configuration or environment."""


class DataError(ApfedError):
    """A data file is missing, malformed, or does not match the others."""


class ConfigError(ApfedError):
    """A configuration value is out of range or inconsistent."""
