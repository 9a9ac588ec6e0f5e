"""Bring-your-own party files: one CSV or NPZ per party, each with an ID column; rows aligned by ID."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apfed.data.encoding import Encoding, describe, encode_table, is_missing_value, one_hot, parse_number
from apfed.data.splits import TimeOrder, split_labels, split_name
from apfed.data.timesplit import Times, describe_split, parse_times
from apfed.data.views import MultiViewDataset, UnmatchedRows, View, compact_index, first_empty_column, first_nonfinite
from apfed.errors import DataError


@dataclass
class PartyTable:
    """The rows of one party's file: ids, numeric features, and the raw label strings if it has them."""

    path: Path
    ids: np.ndarray
    X: np.ndarray
    columns: list[str]
    labels: np.ndarray | None
    encoding: Encoding | None = None  # set when the file has categorical columns (``columns`` are then features)
    times: Times | None = None  # the time column's values (``time_column``): the test rows are the latest

    def time_order(self) -> TimeOrder | None:
        """What an out-of-time split of this table needs (None without a time column)."""
        if self.times is None:
            return None
        return TimeOrder(self.times, self.ids, f"{self.path}: time column {self.times.column!r}")

    def view(self, rows: np.ndarray | None = None) -> View:
        """This party's view (of ``rows`` only, if given), named after the file."""
        X = self.X if rows is None else self.X[rows]
        return View(name=self.path.stem, kind="tabular", X=X, columns=self.columns, encoding=self.encoding)

    def describe(self) -> list[str]:
        """How the file was read: its categorical columns and missing values, one line each."""
        return describe(self.path.name, self.view())


def read_party_file(
    path: str | Path, id_column: str, label_column: str | None = None, time_column: str | None = None
) -> PartyTable:
    """Read one party's CSV or NPZ file. The label column is taken only if ``label_column`` is given; the time
    column (``time_column``: dates or numbers, not a feature) only if it is."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if label_column is not None:
        _distinct_columns(id_column, label_column, time_column)
    if path.suffix.lower() == ".npz":
        return _read_npz(path, id_column, label_column, time_column)
    return _read_csv(path, id_column, label_column, time_column)


def _distinct_columns(id_column: str, label_column: str, time_column: str | None = None) -> None:
    if label_column == id_column:
        raise DataError(f"the ID column and the label column are both {id_column!r}; name two different columns")
    if time_column in (id_column, label_column):
        what = "ID" if time_column == id_column else "label"
        raise DataError(f"the time column and the {what} column are both {time_column!r}; name two different columns")


DELIMITERS = (",", ";", "\t", "|")


def csv_delimiter(path: Path) -> str:
    """A CSV file's field delimiter, from its header line: whichever of comma, semicolon, tab and bar occurs most
    often there (spreadsheets export semicolons where the decimal mark is a comma); a comma when none does."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            line = f.readline()
    except (OSError, UnicodeDecodeError):
        return ","  # the reader that follows names the problem
    return max(DELIMITERS, key=line.count) if any(d in line for d in DELIMITERS) else ","


def _unreadable(path: Path, e: Exception) -> DataError:
    """The error for a CSV file the csv module cannot read; one not in UTF-8 (a spreadsheet's default export on
    some systems) says how to convert it."""
    if isinstance(e, UnicodeDecodeError):
        byte = e.object[e.start : e.start + 1].hex()
        return DataError(
            f"{path}: not a readable CSV file: it is not UTF-8 text (byte 0x{byte}); save it as UTF-8 (in Excel:"
            " 'CSV UTF-8') or convert it, e.g. iconv -f cp1252 -t utf-8"
        )
    return DataError(f"{path}: not a readable CSV file ({e})")


def read_csv_header(path: Path) -> list[str]:
    """A CSV file's column names (stripped, each at most once); DataError for anything else."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f, delimiter=csv_delimiter(path)), None)
    except (UnicodeDecodeError, csv.Error) as e:
        raise _unreadable(path, e) from None
    if not header:
        raise DataError(f"{path}: needs a header row and at least one data row")
    header = [h.strip() for h in header]
    twice = sorted(h for h, n in Counter(header).items() if n > 1)  # linear: a header may have 10^5 columns
    if twice:  # a second column of the same name would be read as a copy of the first
        raise DataError(f"{path}: column names used more than once: {', '.join(repr(h) for h in twice)}")
    if any("\n" in h or "\r" in h for h in header):
        raise DataError(f"{path}: a column name holds a line break")
    return header


def read_csv_columns(
    path: Path, header: list[str], text: list[int], features: list[int], discover: bool = False
) -> tuple[list[np.ndarray], np.ndarray, dict[int, np.ndarray]]:
    """The ``text`` columns of a CSV file (as strings), its ``features`` columns (float32, rows x features; NaN
    where a value is missing: empty or an NA marker) and, with ``discover``, the feature columns that hold only
    text (position in ``features`` -> strings; NaN in the array): categorical columns.

    Two passes, neither of which holds the file's fields as Python strings: the csv module checks that every row
    has a field per ``header`` name (from ``read_csv_header``) and keeps the text columns; numpy's C parser reads
    the features straight into float32. A 200,000 x 52 file (87 MB) reads in 1.4 s with a 92 MB process peak,
    where holding every field as text took 5.7 s and 875 MB (benchmarks/csv_read_timing.py). A file with missing
    values or text columns is read again field by field (``_parse_rows``; 4.6 s and 163 MB for that file with 1 %
    of its values missing and a text column); a column mixing numbers and text, and without ``discover`` a text
    column, is an error naming its first text value.
    """
    delimiter = csv_delimiter(path)
    strings, n = _csv_text_columns(path, header, text, delimiter)
    if not features:
        return strings, np.zeros((n, 0), np.float32), {}
    try:
        X = np.loadtxt(
            path,
            dtype=np.float32,
            delimiter=delimiter,
            quotechar='"',  # as the csv module reads them: a quoted field, "" inside it for a quote
            comments=None,  # an ID may start with '#'
            skiprows=1,
            usecols=features,
            ndmin=2,
            encoding="utf-8-sig",
        )
    except ValueError:
        X, first_text, numeric = _parse_rows(path, features, n, delimiter)
        refused = [k for k in first_text if numeric[k] or not discover]
        if refused:
            k = min(refused, key=lambda k: first_text[k][0])
            line, value = first_text[k]
            what = "mixes numbers and text" if numeric[k] else "is not numeric"
            also = ", or only text (a categorical column)" if discover else ""
            raise DataError(
                f"{path}: column {header[features[k]]!r} {what} (line {line}: {value!r}): a feature column holds"
                f" numbers (empty or NA where a value is missing){also}"
            ) from None
        found = sorted(first_text)
        kept, _ = _csv_text_columns(path, header, [features[k] for k in found], delimiter)
        return strings, X, dict(zip(found, kept, strict=True))
    if len(X) != n:  # both passes read the same rows, or the file is refused
        raise DataError(f"{path}: {n} rows but {len(X)} rows of features; check the file's quoting")
    return strings, X, {}


def _csv_text_columns(path: Path, header: list[str], text: list[int], delimiter: str) -> tuple[list[np.ndarray], int]:
    """The ``text`` columns (strings) and the number of rows, every row checked to have a field per header name."""
    kept: list[list[str]] = [[] for _ in text]
    width, n = len(header), 0
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            next(reader, None)
            for row in reader:
                if len(row) != width:
                    raise DataError(f"{path}: line {reader.line_num} has {len(row)} fields, the header has {width}")
                for col, j in zip(kept, text, strict=True):
                    col.append(row[j])
                n += 1
    except (UnicodeDecodeError, csv.Error) as e:
        raise _unreadable(path, e) from None
    if n == 0:
        raise DataError(f"{path}: needs a header row and at least one data row")
    return [np.asarray(col, dtype=str) for col in kept], n


def _parse_rows(
    path: Path, features: list[int], n: int, delimiter: str
) -> tuple[np.ndarray, dict[int, tuple[int, str]], list[bool]]:
    """The ``features`` columns parsed field by field as numpy's parser reads a number (spaces around it are
    fine, ``1_000`` is not; in a file not separated by commas, ``2,5`` is 2.5, as spreadsheets that export
    semicolons write it): the values (NaN where missing or text), each text column's first text value
    (position -> (line, value)), and which columns hold at least one number."""
    X = np.full((n, len(features)), np.nan, np.float32)
    first_text: dict[int, tuple[int, str]] = {}
    numeric = [False] * len(features)
    decimal_comma = delimiter != ","
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        next(reader)
        for i, row in enumerate(reader):
            for k, j in enumerate(features):
                v = row[j]
                if (x := parse_number(v, decimal_comma)) is None:
                    if k not in first_text and not is_missing_value(v):
                        first_text[k] = (reader.line_num, v)
                    continue
                if x == x:  # "nan" is a missing value, not a number
                    X[i, k] = x
                    numeric[k] = True
    return X, first_text, numeric


def _read_csv(path: Path, id_column: str, label_column: str | None, time_column: str | None = None) -> PartyTable:
    header = read_csv_header(path)
    if id_column not in header:
        raise DataError(f"{path}: no ID column {id_column!r} (columns: {', '.join(header[:8])}…); set --id-column")
    if label_column is not None and label_column not in header:
        raise DataError(f"{path}: no label column {label_column!r}; set --label-column")
    if time_column is not None and time_column not in header:
        raise DataError(f"{path}: no time column {time_column!r}; set --time-column")
    feature_names = [h for h in header if h not in (id_column, label_column, time_column)]
    if not feature_names:
        raise DataError(f"{path}: no feature columns besides the ID, label and time columns")
    named = [c for c in (id_column, label_column, time_column) if c is not None]
    strings, X, found = read_csv_columns(
        path, header, [header.index(c) for c in named], [header.index(c) for c in feature_names], discover=True
    )
    labels = strings[1] if label_column else None
    times = parse_times(strings[-1], time_column, str(path)) if time_column else None
    text_columns = {feature_names[k]: v for k, v in found.items()}
    X, columns, encoding = one_hot(str(path), feature_names, np.delete(X, list(found), axis=1), text_columns)
    return _checked(PartyTable(path, strings[0], X, columns, labels, encoding, times))


def open_npz(path: Path):
    """An NPZ archive's arrays (``np.lib.npyio.NpzFile``), never unpickling; DataError for anything else."""
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # np.load would also take a .npy array or try to unpickle
            raise DataError(f"{path}: not an NPZ archive (np.savez/np.savez_compressed writes one)")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises several types for a corrupt archive
        raise DataError(f"{path}: not a readable NPZ file ({e})") from None


def _read_npz(path: Path, id_column: str, label_column: str | None, time_column: str | None = None) -> PartyTable:
    z = open_npz(path)
    if id_column not in z.files:
        raise DataError(f"{path}: no ID array {id_column!r} (arrays: {', '.join(z.files)}); set --id-column")
    if time_column is not None and time_column not in z.files:
        raise DataError(f"{path}: no time array {time_column!r} (arrays: {', '.join(z.files)}); set --time-column")
    if "X" not in z.files:
        raise DataError(f"{path}: an NPZ party file needs a 2-D feature array named 'X'")
    if label_column is not None and label_column not in z.files:
        raise DataError(f"{path}: no label array {label_column!r}; set --label-column")
    raw = z["X"]
    if raw.ndim != 2:
        raise DataError(f"{path}: 'X' must be 2-D (rows, features), got shape {raw.shape}")
    columns = [str(c) for c in z["columns"]] if "columns" in z.files else [f"x{j}" for j in range(raw.shape[1])]
    if len(columns) != raw.shape[1]:
        raise DataError(f"{path}: 'columns' names {len(columns)} columns but 'X' has {raw.shape[1]}")
    encoding = None
    if raw.dtype.kind in "US":  # text in some column: categorical columns, as in a CSV file
        X, columns, encoding = encode_table(str(path), raw, columns)
    elif raw.dtype.kind in "fiu":
        X = raw.astype(np.float32)
    else:
        raise DataError(f"{path}: 'X' must hold numbers (or text, for categorical columns), got {raw.dtype}")
    labels = np.asarray(z[label_column]).astype(str) if label_column else None
    times = _npz_times(path, z, time_column, len(raw)) if time_column else None
    return _checked(PartyTable(path, np.asarray(z[id_column]).astype(str), X, columns, labels, encoding, times))


def _npz_times(path: Path, z, time_column: str, n: int) -> Times:
    """An NPZ file's time array (numbers, numpy datetimes or ISO dates as text), one value per row."""
    raw = np.asarray(z[time_column])
    if raw.shape != (n,):
        raise DataError(f"{path}: time array {time_column!r} must hold one value per row ({n}), got shape {raw.shape}")
    return parse_times(raw, time_column, str(path), lines=False)


def repeated_ids(ids: np.ndarray) -> tuple[str, int, int] | None:
    """IDs that appear more than once: (the first of them in sorted order, how often it appears, how many IDs
    repeat); None when every ID is unique."""
    values, counts = np.unique(ids, return_counts=True)
    dup = np.flatnonzero(counts > 1)
    return (str(values[dup[0]]), int(counts[dup[0]]), len(dup)) if len(dup) else None


def _checked(t: PartyTable) -> PartyTable:
    if len(t.ids) != len(t.X):
        raise DataError(f"{t.path}: {len(t.ids)} ids but {len(t.X)} feature rows")
    if (repeated := repeated_ids(t.ids)) is not None:
        first, times, n = repeated
        more = f", and {n - 1} more duplicated ID{'s' if n > 2 else ''}" if n > 1 else ""
        raise DataError(f"{t.path}: the ID column has duplicate values: {first!r} appears {times} times{more}")
    if (found := first_nonfinite(t.X, missing_ok=True)) is not None:
        r, c, n = found
        more = f"; {n} rows have such values" if n > 1 else ""
        where = f"ID {str(t.ids[r])!r}, column {t.columns[c]!r}"
        raise DataError(f"{t.path}: features hold infinite values: {where}{more}")
    if (empty := first_empty_column(t.X)) is not None:
        raise DataError(f"{t.path}: column {t.columns[empty]!r} has no value in any row; drop it")
    return t


def refuse_passive_labels(path: str | Path, label_column: str) -> None:
    """DataError when a passive party's CSV file has the label column (read from its header, before its values): it
    would train on the labels as a feature, and TVFL's accuracy would mean nothing."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() != ".npz" and label_column in read_csv_header(path):
        raise DataError(
            f"{path}: a passive party's file has the label column {label_column!r}; passive parties hold no labels"
            " (drop or rename that column)"
        )


def passive_party_file(path: str | Path, id_column: str):
    """A passive party's own file (no labels) as its PartyData."""
    from apfed.data.views import PartyData

    t = read_party_file(path, id_column)
    return PartyData(view=t.view(), ids=t.ids)


def active_party_file(
    path: str | Path,
    id_column: str,
    label_column: str,
    split_seed: int = 0,
    test_fraction: float = 0.2,
    task: str = "classification",
    time_column: str | None = None,
    log=lambda *_: None,
):
    """The active party's own file (with labels) as its PartyData, with a seeded stratified split (``test_fraction``
    of the rows to test; 0: none; with ``time_column``, the latest rows by it test); ``task`` ``regression``: the
    labels are numbers to predict. ``log`` gets an out-of-time split's lines.

    Used where the active party holds only its own file (a real deployment); rows are aligned with the
    passives later, inside the protocol."""
    from apfed.data.views import PartyData

    t = read_party_file(path, id_column, label_column, time_column)
    class_names, labels, train, test, unlabelled = split_labels(
        t.labels, f"{t.path}: label column {label_column!r} holds", test_fraction, split_seed, task, t.time_order()
    )
    split = _time_split_note(t, labels, class_names, train, test, log)
    return PartyData(
        view=t.view(),
        ids=t.ids,
        labels=labels,
        class_names=class_names,
        train_rows=train,
        test_rows=test,
        unlabelled_rows=unlabelled if len(unlabelled) else None,
        split=split,
        times=t.times.values if t.times is not None else None,
    )


def _time_split_note(t: PartyTable, labels, class_names, train, test, log) -> dict | None:
    """An out-of-time split's summary (``describe_split``), its lines logged; None for a stratified split."""
    if t.times is None:
        return None
    summary, lines = describe_split(t.path.name, t.times, labels, class_names, train, test)
    for line in lines:
        log(line)
    return summary


VIEW_PREFIX = "view_"


def multi_view_npz(path: str | Path) -> list[str] | None:
    """The arrays of a multi-view NPZ file (``view_<name>`` per view, rows aligned, plus the labels): None for
    any other file."""
    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return None
    with open_npz(path) as z:
        names = [f for f in z.files if f.startswith(VIEW_PREFIX)]
    return names or None


def _load_multi_view(
    path: Path,
    arrays: list[str],
    id_column: str,
    label_column: str,
    split_seed: int,
    test_fraction: float,
    log,
    task: str = "classification",
    time_column: str | None = None,
):
    """A whole benchmark in one NPZ file: every view's rows in the same order, as ``apfed.from_arrays`` takes
    them (``time_column``: the array of their times, for an out-of-time split)."""
    from apfed.data.arrays import from_arrays

    with open_npz(path) as z:
        if label_column not in z.files:
            raise DataError(
                f"{path}: a multi-view NPZ file needs its labels in an array {label_column!r} (arrays:"
                f" {', '.join(z.files)}); set --label-column"
            )
        views = {a[len(VIEW_PREFIX) :]: z[a] for a in arrays}
        ids = z[id_column] if id_column in z.files else None
        labels = z[label_column]
        if time_column is not None and time_column not in z.files:
            raise DataError(f"{path}: no time array {time_column!r} (arrays: {', '.join(z.files)}); set --time-column")
        times = z[time_column] if time_column is not None else None
    split_lines: list[str] = []
    try:
        ds = from_arrays(
            views,
            labels,
            ids=ids,
            name=path.stem,
            test_size=test_fraction,
            seed=split_seed,
            task=task,
            times=times,
            time_column=time_column or "time",
            log=split_lines.append,
        )
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    log(f"{path.name}: {len(ds.labels)} rows, {len(views)} views ({', '.join(views)}) aligned in the file")
    for line in split_lines:
        log(line.replace(f"{path.stem}: ", f"{path.name}: ", 1))
    if ds.unlabelled is not None:
        log(unlabelled_note(path.name, len(ds.unlabelled), len(ds.unlabelled), len(views) > 1))
    return ds


def align_tables(tables: list[PartyTable]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Intersect ids across parties, in the first (active) party's row order.

    Returns the common ids and, per party, the row index of each common id in that party's table.
    """
    common = tables[0].ids
    for t in tables[1:]:
        common = common[np.isin(common, t.ids)]
    if len(common) == 0:
        raise DataError("no sample ID is shared by all parties; check --id-column and the files' ID formats")
    rows = []
    for t in tables:
        order = np.argsort(t.ids)
        rows.append(order[np.searchsorted(t.ids, common, sorter=order)])
    return common, rows


def load_party_files(
    paths: list[str],
    id_column: str,
    label_column: str,
    split_seed: int = 0,
    log=print,
    test_fraction: float = 0.2,
    task: str = "classification",
    time_column: str | None = None,
) -> MultiViewDataset:
    """Load one file per party (active first) and align rows by ID; the active party's whole file is split
    (``test_fraction`` of its rows to test, stratified and seeded, or with ``time_column`` the latest by that column
    of the active party's file; its rows that some passive lacks are the dataset's ``unmatched`` rows). ``task``
    ``regression``: the labels are numbers to predict."""
    if len(paths) < 1:
        raise DataError("give at least one --data file (the active party's, with labels)")
    if len(paths) == 1 and (views := multi_view_npz(paths[0])) is not None:
        return _load_multi_view(
            Path(paths[0]), views, id_column, label_column, split_seed, test_fraction, log, task, time_column
        )
    _distinct_columns(id_column, label_column, time_column)
    for p in paths[1:]:
        refuse_passive_labels(p, label_column)
    tables = [
        read_party_file(p, id_column, label_column if i == 0 else None, time_column if i == 0 else None)
        for i, p in enumerate(paths)
    ]
    return dataset_from_tables(tables, id_column, label_column, split_seed, log, test_fraction, task)


def dataset_from_tables(
    tables: list[PartyTable],
    id_column: str,
    label_column: str,
    split_seed: int = 0,
    log=print,
    test_fraction: float = 0.2,
    task: str = "classification",
) -> MultiViewDataset:
    """The dataset of the parties' tables (the active party's first): rows aligned by ID, the active party's whole
    table split (``test_fraction`` to test, 20 % by default; 0: every row trains), its rows that some passive lacks
    kept as ``unmatched``."""
    common, rows = align_tables(tables)
    for t in tables:
        log(f"{t.path.name}: {len(t.ids)} rows, {len(common)} matched by {id_column!r}")
        for line in t.describe():
            log(line)
    # the active party's whole file is split, as in a deployment (apfed.data.files.active_party_file), so that a
    # run here and a deployment train and test on the same rows; the rows some passive lacks are the unmatched ones
    active = tables[0]
    class_names, labels, train, test, unlabelled = split_labels(
        active.labels,
        f"{active.path}: label column {label_column!r} holds",
        test_fraction,
        split_seed,
        task,
        active.time_order(),
    )
    split = _time_split_note(active, labels, class_names, train, test, log)
    is_test = np.zeros(len(active.ids), dtype=bool)
    is_test[test] = True
    first = rows[0]
    position = np.full(len(active.ids), -1, dtype=np.int64)  # each active row's position among the matched rows
    position[first] = np.arange(len(first))
    train_idx, test_idx = position[train], position[test]  # in the split's order, as for fully matched files
    train_idx, test_idx = train_idx[train_idx >= 0], test_idx[test_idx >= 0]
    if len(train_idx) == 0 or (len(test_idx) == 0 and len(test)):
        raise DataError(
            f"the {len(common)} rows every party holds include no {'training' if len(test_idx) else 'test'} row of"
            f" {active.path.name}'s {split_name(test_fraction)} split; check the ID columns"
        )
    views = [t.view(r) for t, r in zip(tables, rows, strict=True)]
    unmatched = None
    rest = np.zeros(len(active.ids), dtype=bool)
    if len(tables) > 1:
        rest[:] = True
        rest[first] = False
        rest[unlabelled] = False  # a row with no label that some passive lacks has nothing to train
    others = np.flatnonzero(rest)
    if len(others):
        when = active.times.values[others] if active.times is not None else None
        unmatched = UnmatchedRows(0, active.X[others], labels[others], active.ids[others], is_test[others], when)
        n_test = int(is_test[others].sum())
        log(
            f"{active.path.name}: {len(others)} labelled rows are missing at some passive"
            f" ({len(others) - n_test} train, {n_test} test): standalone methods also train and are tested on them"
            " (unmatched_rows=train, the default; tvfl and centralized cannot)"
        )
    held = position[unlabelled]
    held = held[held >= 0]
    if len(unlabelled):
        log(unlabelled_note(active.path.name, len(unlabelled), len(held), len(tables) > 1))
    return MultiViewDataset(
        name="+".join(t.path.stem for t in tables),
        views=views,
        labels=labels[first],
        ids=common,
        class_names=class_names,
        train_idx=compact_index(train_idx, len(common)),
        test_idx=compact_index(test_idx, len(common)),
        unmatched=unmatched,
        unlabelled=np.sort(held) if len(held) else None,
        notes={"test_split": split} if split else {},
        times=active.times.values[first] if active.times is not None else None,
    )


def unlabelled_note(name: str, rows: int, held: int, passives: bool = True) -> str:
    """The line that says what becomes of a file's ``rows`` rows with no label, ``held`` of them by every party."""
    lacking = f" ({rows - held} of them, which some passive lacks, are left out)" if held < rows else ""
    if not passives:
        return f"{name}: {rows} rows have no label: left out (only the passives' losses can use them)"
    return (
        f"{name}: {rows} rows have no label{lacking}: apfed-r, -c, -m and -kd train the passives' losses on them"
        " (unlabelled_rows=train, the default; local, tvfl and centralized leave them out), and none is tested"
    )
