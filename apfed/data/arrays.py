"""A multi-view dataset from arrays already in memory: numpy arrays or pandas DataFrames, one per party's view,
the same samples in the same row order (the rows are aligned already; no ID matching happens here)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from apfed.data.encoding import Encoding, encode_table
from apfed.data.splits import TimeOrder, check_task, check_test_fraction, split_labels
from apfed.data.timesplit import describe_split, parse_times
from apfed.data.views import CONV_MIN_ROWS, MultiViewDataset, View, first_empty_column, first_nonfinite
from apfed.errors import DataError


def _features(name: str, X: Any) -> tuple[np.ndarray, list[str] | None, Encoding | None]:
    """A view's array (float32, or the integer pixels of an image view), its column names and, when some columns
    hold text (strings in a DataFrame or an object array), how they were one-hot encoded."""
    columns = [str(c) for c in X.columns] if hasattr(X, "columns") and hasattr(X, "to_numpy") else None
    try:
        arr = X.to_numpy() if hasattr(X, "to_numpy") else np.asarray(X)
    except (TypeError, ValueError) as e:  # ragged lists and the like
        raise DataError(f"view {name!r}: not an array ({e})") from None
    if arr.ndim == 2 and arr.shape[1] and arr.dtype.kind in "OUS":  # text somewhere: categorical columns
        return encode_table(f"view {name!r}", arr, columns or [f"{name}_{j}" for j in range(arr.shape[1])])
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"view {name!r}: features must be numbers (or text, in a categorical column), got {arr.dtype}")
    if arr.ndim == 4:  # (N, C, H, W) images: integer pixels keep their type, the preprocessing scales them
        if min(arr.shape[2:]) < CONV_MIN_ROWS:
            raise DataError(
                f"view {name!r}: images of {arr.shape[2]}x{arr.shape[3]} pixels are too small for the conv encoder"
                f" (at least {CONV_MIN_ROWS}x{CONV_MIN_ROWS})"
            )
        return arr, None, None
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise DataError(
            f"view {name!r}: give a 2-D array (samples x features) or 4-D images (samples x channels x height x"
            f" width); got shape {arr.shape}"
        )
    return arr.astype(np.float32, copy=False), columns, None


def from_arrays(
    views: Mapping[str, Any],
    labels: Any,
    *,
    ids: Any = None,
    name: str = "arrays",
    test_size: float = 0.2,
    seed: int = 0,
    task: str = "classification",
    times: Any = None,
    time_column: str = "time",
    log=lambda *_: None,
) -> MultiViewDataset:
    """A dataset from in-memory views: ``views`` maps each view's name to its features (a 2-D numpy array or a
    pandas DataFrame, whose column names are kept, or 4-D images N x C x H x W), ``labels`` the class of every row
    (any values: their sorted distinct values become the classes; None or NaN marks a row with no label, which
    only the passives' losses train on: ``TrainConfig.unlabelled_rows``). Every view has the same rows in the same
    order; ``ids`` names them (default 0..N-1). The split is stratified (``test_size``, ``seed``), as for files;
    with ``times`` (one per row: dates, ISO text or numbers, named ``time_column`` in messages) it is out of time:
    the latest ``test_size`` of the labelled rows test, and ``log`` gets the periods.
    ``task="regression"``: the labels are numbers to predict (the split is stratified by their quantiles).
    A column of text (strings in a DataFrame or an object array) is categorical, one 0/1 feature per value; a
    missing value (NaN, None, an empty string or an NA marker) is filled with its column's training mean, as for
    files. Use the result like ``apfed.load_dataset``'s (``apfed.train``, ``apfed.compare``; ``apfed.simulate``, whose
    virtual SuperNodes each load their own data, takes the arrays saved as a multi-view NPZ file instead: an array
    ``view_<name>`` per view and the labels), the active view given by index or name."""
    test_size, task = check_test_fraction(test_size), check_task(task)
    if not isinstance(views, Mapping) or not views:
        raise DataError("give the views as a mapping of view name to array, e.g. {'bank': X_bank, 'shop': X_shop}")
    arrays = {}
    for key, X in views.items():
        if not isinstance(key, str) or not key:
            raise DataError(f"view names must be non-empty strings, got {key!r}")
        arrays[key] = _features(key, X)
    y = labels.to_numpy() if hasattr(labels, "to_numpy") else np.asarray(labels)
    if y.ndim != 1:
        raise DataError(f"labels must be one value per row (1-D), got shape {y.shape}")
    n = len(y)
    for key, (X, _, _) in arrays.items():
        if len(X) != n:
            raise DataError(
                f"view {key!r} has {len(X)} rows but there are {n} labels; every view needs one row per label"
            )
    row_ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids)
    if row_ids.shape != (n,):
        raise DataError(f"ids must be one value per row ({n}), got shape {row_ids.shape}")
    values, counts = np.unique(row_ids, return_counts=True)
    if len(values) != n:
        first = np.flatnonzero(counts > 1)[0]
        raise DataError(f"ids must be distinct: {str(values[first])!r} appears {counts[first]} times")
    for key, (X, columns, _) in arrays.items():
        tabular = X.ndim == 2
        if (found := first_nonfinite(X, missing_ok=tabular)) is not None:  # NaN: a missing value in a table
            r, c, bad = found
            where = f"column {columns[c]!r}" if columns else f"feature {c}"
            what = "an infinite value" if tabular else "NaN or infinite value"
            raise DataError(
                f"view {key!r}: {what} at row {r} (id {str(row_ids[r])!r}), {where}; {bad} rows have such values"
            )
        if tabular and (empty := first_empty_column(X)) is not None:
            where = f"column {columns[empty]!r}" if columns else f"feature {empty}"
            raise DataError(f"view {key!r}: {where} has no value in any row; drop it")
    by_time = None
    if times is not None:
        t = np.asarray(times.to_numpy() if hasattr(times, "to_numpy") else times)
        if t.shape != (n,):
            raise DataError(f"times must be one value per row ({n}), got shape {t.shape}")
        parsed = parse_times(t, time_column, "times", lines=False)
        by_time = TimeOrder(parsed, row_ids, f"time column {time_column!r}")
    try:
        class_names, encoded, train, test, unlabelled = split_labels(
            y, "the labels hold", test_size, seed, task, by_time
        )
    except TypeError:
        raise DataError("labels mix types that cannot be ordered (e.g. numbers and strings); give one kind") from None
    built = [
        View(key, "image", X, pixel_scale=255.0 if X.dtype == np.uint8 else 1.0)
        if X.ndim == 4
        else View(key, "tabular", X, columns or [f"{key}_{j}" for j in range(X.shape[1])], encoding=encoding)
        for key, (X, columns, encoding) in arrays.items()
    ]
    unlabelled = unlabelled if len(unlabelled) else None
    notes = {}
    if by_time is not None:
        notes["test_split"], lines = describe_split(name, by_time.times, encoded, class_names, train, test)
        for line in lines:
            log(line)
    times = by_time.times.values if by_time is not None else None
    return MultiViewDataset(
        name, built, encoded, row_ids, class_names, train, test, notes=notes, unlabelled=unlabelled, times=times
    )


def from_parties(
    parties: Mapping[str, Any],
    *,
    id_column: str = "id",
    label_column: str = "label",
    test_size: float = 0.2,
    seed: int = 0,
    log=print,
    task: str = "classification",
    time_column: str | None = None,
) -> MultiViewDataset:
    """A dataset from each party's own table in memory, as its file would hold it: ``parties`` maps each party's
    name to a pandas DataFrame (or a mapping of column name to values), the active party's first, with its labels
    in ``label_column``; every table has the ID column ``id_column``, and every other column is a feature (numbers,
    or text: categorical; missing values as for files). Rows are aligned by ID, never by position, exactly as
    ``load_dataset(data=[...])`` aligns party files: the active party's whole table is split (``test_size`` of it
    to test, 0: none; ``seed``), and its rows that some passive lacks train and test its standalone model
    (``MultiViewDataset.unmatched``). ``log`` receives how many rows matched; ``task``: as for ``from_arrays``.
    ``time_column``: a column of the active party's table (dates or numbers, not a feature) whose latest rows test
    instead (an out-of-time split)."""
    from apfed.data.files import PartyTable, _checked, _distinct_columns, dataset_from_tables

    if not isinstance(parties, Mapping) or not parties:
        raise DataError("give the parties as a mapping of party name to table, the active party's first")
    _distinct_columns(id_column, label_column, time_column)
    tables = []
    for i, (name, table) in enumerate(parties.items()):
        if not isinstance(name, str) or not name:
            raise DataError(f"party names must be non-empty strings, got {name!r}")
        if hasattr(table, "columns") and hasattr(table, "__getitem__"):
            keys = list(table.columns)
        elif isinstance(table, Mapping):
            keys = list(table)
        else:
            raise DataError(f"party {name!r}: give a DataFrame or a mapping of column name to values")
        by_name = {str(k): k for k in keys}  # a DataFrame's column labels may be numbers
        columns = list(by_name)
        if id_column not in columns:
            raise DataError(f"party {name!r}: no ID column {id_column!r} (columns: {', '.join(columns[:10])})")
        if i == 0 and label_column not in columns:
            raise DataError(f"party {name!r} (the active party): no label column {label_column!r}")
        if i == 0 and time_column is not None and time_column not in columns:
            raise DataError(f"party {name!r} (the active party): no time column {time_column!r}")
        timed = time_column if i == 0 else None
        if i > 0 and label_column in columns:
            raise DataError(
                f"party {name!r}: a passive party's table has the label column {label_column!r}; passive parties"
                " hold no labels (drop or rename that column)"
            )
        features = [c for c in columns if c not in (id_column, label_column, timed)]
        if not features:
            raise DataError(f"party {name!r}: no feature column besides {id_column!r}")
        wanted = [id_column, *features] + ([label_column] if i == 0 else []) + ([timed] if timed else [])
        values = {c: _column(name, c, table[by_name[c]]) for c in wanted}
        n = len(values[id_column])
        if any(len(v) != n for v in values.values()):
            raise DataError(f"party {name!r}: its columns have different lengths")
        raw = np.empty((n, len(features)), dtype=object)
        for j, c in enumerate(features):
            raw[:, j] = values[c]
        X, names, encoding = encode_table(f"party {name!r}", raw, features)
        labels = values[label_column].astype(str) if i == 0 else None
        when = parse_times(values[timed], timed, f"party {name!r}", lines=False) if timed else None
        table = PartyTable(Path(name), values[id_column].astype(str), X, names, labels, encoding, when)
        tables.append(_checked(table))
    test_size = check_test_fraction(test_size)
    return dataset_from_tables(tables, id_column, label_column, seed, log, test_size, check_task(task))


def _column(party: str, name: str, values: Any) -> np.ndarray:
    arr = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)
    if arr.ndim != 1:
        raise DataError(f"party {party!r}: column {name!r} must be one value per row, got shape {arr.shape}")
    return arr
