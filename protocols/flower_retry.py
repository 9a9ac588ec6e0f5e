"""Flower's first retry of an object that is not uploaded yet, 1 s, shortened where apfed runs Flower's code.

A message is registered at the SuperLink before its contents are uploaded; a pull that lands in between waits for
Flower's ``pull_objects`` to retry, first after 1 s, then doubling up to 10 s. Flower's Message API does not expose
that first wait, so this replaces a module's ``pull_objects`` name with the same function, its first retry after
``OBJECT_RETRY_S`` (then doubling, as Flower's). Where that module or function differs from Flower 1.39's, nothing
changes: slower at worst, never broken.
"""

from __future__ import annotations

import inspect
from functools import partial
from types import ModuleType

OBJECT_RETRY_S = 0.05


def shorten_object_retry(module: ModuleType) -> bool:
    """Shorten the first retry of ``module.pull_objects`` (applied once, however often called); False where the
    module has no such function with Flower 1.39's ``initial_backoff``."""
    pull = getattr(module, "pull_objects", None)
    pull = pull.func if isinstance(pull, partial) else pull
    if pull is None or "initial_backoff" not in inspect.signature(pull).parameters:
        return False
    module.pull_objects = partial(pull, initial_backoff=OBJECT_RETRY_S)
    return True
