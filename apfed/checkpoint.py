"""Atomic checkpoint files: written to a temporary file, flushed to disk, then renamed over the old one, so
a crash mid-write always leaves the last good checkpoint. Loaded with ``weights_only=True``: tensors and
plain containers only, never arbitrary code."""

from __future__ import annotations

import errno
import hashlib
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from apfed.errors import DataError


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to. On a clean exit it is flushed to disk and renamed over
    ``path``; on an error (or Ctrl-C) it is removed and ``path`` keeps what it held."""
    path = Path(path)
    if path.exists() and not path.is_file():  # renamed over, a device or a pipe (/dev/stdout) would be replaced
        raise OSError(errno.EINVAL, "not a regular file (a device, pipe or socket)", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_atomic(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (same directory, fsync, rename)."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def save_checkpoint(path: str | Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    save_atomic(path, buf.getvalue())


def refuse_to_overwrite(path: str | Path) -> None:
    """A new run that would checkpoint to ``path`` stops if an earlier run's checkpoint is there: overwriting it
    at the first checkpoint round would lose a run that was perhaps meant to be resumed."""
    path = Path(path)
    if path.exists():
        import datetime

        when = datetime.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
        raise DataError(
            f"{path} holds the checkpoint of an earlier run (written {when}): continue it with --resume (resume=true"
            " in a Flower run config), or start a new run in another checkpoint directory (or delete this one)"
        )


def load_checkpoint(path: str | Path, device: str = "cpu") -> dict:
    """A checkpoint written by ``save_checkpoint``; one clear error when it is missing or unreadable."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"cannot read the checkpoint {path}: {e.strerror or e}") from None
    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location=device)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged file
        raise DataError(f"{path} is not a readable apfed checkpoint ({type(e).__name__})") from None


def ids_digest(ids: np.ndarray, chunk: int = 65536) -> str:
    """SHA-256 of the ids joined by newlines, hashed a chunk at a time: a checkpoint names the rows it was
    trained on without one Python string per id alive at once."""
    h = hashlib.sha256()
    for start in range(0, len(ids), chunk):
        h.update((("\n" if start else "") + "\n".join(map(str, ids[start : start + chunk]))).encode())
    return h.hexdigest()
