"""Out-of-time test rows: the latest labelled rows by a time column are the test rows (``--time-column``)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from apfed.data.encoding import _all_dates, is_missing
from apfed.errors import DataError


@dataclass(frozen=True)
class Times:
    """A time column's values, as sortable numbers: seconds since 1970 for dates (``kind`` ``date``), the values
    themselves for numbers (``kind`` ``number``: a month index, a Unix time); NaN where a row has none."""

    column: str
    values: np.ndarray  # float64, one per row
    kind: str

    def text(self, value: float) -> str:
        """One value as the file wrote it, near enough: ``2024-03-01`` (a time of day only where it has one)."""
        if self.kind == "number":
            return f"{value:g}"
        iso = str(np.datetime64(int(value), "s"))
        return iso[:10] if iso.endswith("T00:00:00") else iso.replace("T", " ")


def parse_times(raw: np.ndarray, column: str, where: str, lines: bool = True) -> Times:
    """A time column (text, numbers or numpy datetimes) as ``Times``; a DataError naming ``where`` (the file) and the
    first value that is neither a number nor an ISO date (``2024-03-01``, ``2024-03-01 14:30``, ``2024-03``),
    by its line (``lines``: a CSV file, its header on line 1) or its row."""
    raw = np.asarray(raw)
    if raw.dtype.kind == "M":
        seconds = raw.astype("datetime64[s]")
        values = seconds.astype(np.int64).astype(np.float64)
        values[np.isnat(seconds)] = np.nan
        return Times(column, values, "date")
    if raw.dtype.kind in "fiub":
        values = raw.astype(np.float64)
        if np.isinf(values).any():
            bad = int(np.flatnonzero(np.isinf(values))[0])
            raise DataError(f"{where}: time column {column!r} holds {raw[bad]} ({_at(bad, lines)}), not a time")
        return Times(column, values, "number")
    text = np.char.strip(raw.astype(str))
    missing = is_missing(text)
    present = np.flatnonzero(~missing)
    values = np.full(len(text), np.nan)
    try:
        values[present] = text[present].astype(np.float64)
    except ValueError:
        pass
    else:
        if np.isinf(values).any():
            bad = int(np.flatnonzero(np.isinf(values))[0])
            raise DataError(f"{where}: time column {column!r} holds {str(raw[bad])!r} ({_at(bad, lines)}), not a time")
        return Times(column, values, "number")
    with warnings.catch_warnings():  # an offset (+01:00, Z) is read as UTC; numpy warns that it converts it
        warnings.simplefilter("ignore")
        try:
            seconds = text[present].astype("datetime64[s]")
        except ValueError:
            bad = next(i for i in present if not _is_date(text[i]))
            raise DataError(
                f"{where}: time column {column!r} holds {str(raw[bad])!r} ({_at(bad, lines)}), neither a number nor"
                " an ISO date (2024-03-01, 2024-03-01 14:30, 2024-03)"
            ) from None
    values[present] = np.where(np.isnat(seconds), np.nan, seconds.astype(np.int64))
    return Times(column, values, "date")


def _at(row: int, lines: bool) -> str:
    return f"line {row + 2}" if lines else f"row {row}"  # a CSV file's header is its line 1


def is_time(value: str) -> bool:
    """Whether one text value is a time ``parse_times`` reads: a finite number or an ISO date."""
    try:
        return math.isfinite(float(value))
    except ValueError:
        return _is_date(value.strip())


def _is_date(value: str) -> bool:
    return _all_dates(np.array([value]))


def time_split(
    times: np.ndarray, test_size: float, holder: str, ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into ``times``, the labelled rows' times) of the training and test rows: the test rows are the
    latest ``test_size`` share (rounded up, as the stratified split rounds it), and every row as late as the earliest
    of them, so that no training row is as late as a test row. ``test_size`` 0: every row trains, times or none.
    A DataError naming ``holder`` (where the time column is) when a row has no time (named by its ID from ``ids``)
    or no row is earlier than the test rows."""
    n = len(times)
    if test_size == 0:
        return np.arange(n), np.arange(0)
    if np.isnan(times).any():
        missing = np.flatnonzero(np.isnan(times))
        who = f"ID {str(ids[missing[0]])!r}" if ids is not None else f"labelled row {missing[0]}"
        more = f" ({len(missing)} labelled rows have none)" if len(missing) > 1 else ""
        raise DataError(f"{holder} is empty for {who}{more}; every row with a label needs a time to be split by it")
    k = math.ceil(test_size * n)
    cut = np.partition(times, n - k)[n - k]
    test = np.flatnonzero(times >= cut)
    if len(test) == n:
        raise DataError(
            f"{holder} holds the same time from the latest {test_size:.0%} of the labelled rows back to the earliest:"
            " no row is earlier to train on"
        )
    return np.flatnonzero(times < cut), test


def describe_split(
    name: str, times: Times, labels: np.ndarray, class_names: list[str], train: np.ndarray, test: np.ndarray
) -> tuple[dict, list[str]]:
    """What an out-of-time split of ``name``'s rows was (``train``, ``test``: row positions), for the model file's
    provenance and the reports, and its log lines: the two periods, and the classes that only the test rows have
    (a model learns nothing of a class that first shows after its training rows)."""
    tr, te = times.values[train], times.values[test]
    tr = tr[~np.isnan(tr)]  # test fraction 0: the training rows need no time
    summary = {"time_column": times.column, "kind": times.kind}
    if len(tr):
        summary |= {"train_from": times.text(tr.min()), "train_until": times.text(tr.max())}
    if len(te):
        summary |= {"test_from": times.text(te.min()), "test_until": times.text(te.max())}
    lines = [f"{name}: {time_split_text(summary)} ({len(test)} test, {len(train)} training rows)"]
    if class_names and len(test):
        new = sorted(set(np.unique(labels[test]).tolist()) - set(np.unique(labels[train]).tolist()))
        if new:
            shown = ", ".join(repr(class_names[c]) for c in new[:5]) + (", ..." if len(new) > 5 else "")
            lines.append(f"{name}: warning: only test rows have class {shown}; the model never trains on it")
    return summary, lines


def time_split_text(summary: dict) -> str:
    """An out-of-time split in a few words, for logs, reports and ``apfed info``: ``out of time by 'opened': test
    rows from ... to ..., training rows from ... to ...``."""
    t = {k: str(summary.get(k, "?")) for k in ("time_column", "test_from", "test_until", "train_from", "train_until")}
    tested = f"test rows from {t['test_from']} to {t['test_until']}, " if "test_from" in summary else ""
    return f"out of time by {t['time_column']!r}: {tested}training rows from {t['train_from']} to {t['train_until']}"
