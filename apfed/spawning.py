"""Spawned worker processes that do not re-run the caller's main script."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def without_main_script() -> Iterator[None]:
    """Processes spawned inside this block do not import the caller's ``__main__`` (script or ``-m`` module).

    ``multiprocessing``'s spawn runs the parent's main module again in every child, so that objects defined there
    can be unpickled. apfed's workers receive only apfed's own objects, and running a user's script again (one
    without an ``if __name__ == "__main__":`` guard) would start the whole run again inside each worker:
    ``multiprocessing`` then stops the worker while it starts, and a ``Pool`` replaces it forever. Only the start
    of the processes reads the main module, so the block should hold just that."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__spec__", "__file__") if k in main.__dict__}
    main.__dict__["__spec__"] = None
    main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)
