"""A run's per-epoch metrics as a CSV file (``apfed train --metrics``, ``apfed simulate --metrics``, a deployment's
``metrics-out``): one row per epoch, a column per metric, rewritten whole and atomically as epochs end (at most
once a second) so that it can be read (or plotted) while the run goes on, and a crash never leaves half a row."""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from apfed.checkpoint import save_atomic
from apfed.errors import DataError


def _cell(v) -> str:
    if v is None or isinstance(v, float) and math.isnan(v):
        return ""
    if isinstance(v, float):
        return format(v, ".7g")
    return str(v)


def history_csv(rows: Sequence[dict]) -> str:
    """The rows as CSV text: ``epoch`` first, then every other key in the order first seen (a key some epochs lack,
    such as a metric that starts later, is an empty cell there)."""
    columns: dict[str, None] = {"epoch": None}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def write_history(path: str | Path, rows: Sequence[dict]) -> None:
    """Replace ``path`` with the rows' CSV (same directory, fsync, rename)."""
    save_atomic(path, history_csv(rows).encode())


def read_history(path: str | Path) -> list[dict]:
    """The rows of a file ``write_history`` wrote, numbers as floats (``epoch`` as an int), empty cells left out."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        out = [{k: int(v) if k == "epoch" else float(v) for k, v in row.items() if v != ""} for row in rows]
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as e:
        raise DataError(f"{path}: not a metrics file apfed wrote ({e})") from None
    if any("epoch" not in row for row in out):
        raise DataError(f"{path}: not a metrics file apfed wrote (a row without an epoch)")
    return out


class HistoryWriter:
    """Keeps ``path`` up to date as epochs end: rewritten after an epoch once ``every_s`` seconds have passed since
    the last write (epochs of a few milliseconds would otherwise spend more on the file than on training), and
    always at the end. ``resume``: a continued run keeps the rows the file already holds for the epochs before the
    first new one (the finished run's own history replaces them all at the end)."""

    def __init__(
        self, path: str | Path, resume: bool = False, every_s: float = 1.0, warn: Callable[[str], object] = print
    ):
        self.path = Path(path)
        self.earlier = read_history(self.path) if resume and self.path.exists() else []
        self.rows: list[dict] = []
        self.every_s, self.written, self.warn, self.failed = every_s, -math.inf, warn, False

    def __call__(self, row: dict) -> None:
        if not self.rows:  # the first epoch of this process: keep only the file's epochs before it
            self.earlier = [r for r in self.earlier if r["epoch"] < row["epoch"]]
        self.rows.append(row)
        if not self.failed and time.monotonic() - self.written >= self.every_s:
            self._write([*self.earlier, *self.rows])
            self.written = time.monotonic()

    def finish(self, history: Sequence[dict]) -> None:
        """The run's whole history, as the model file's provenance counts it."""
        self._write(history)

    def _write(self, rows: Sequence[dict]) -> None:
        """A file that cannot be written (a full disk, a folder removed) is a warning, once: the training, and the
        model it makes, matter more than its curve."""
        try:
            write_history(self.path, rows)
        except OSError as e:
            if not self.failed:
                self.warn(f"cannot write the metrics file {self.path}: {e.strerror or e}; the run goes on without it")
            self.failed = True
