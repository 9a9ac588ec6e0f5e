"""Seeded, stratified train/test splits (a regression target is stratified by its quantiles)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from apfed.data.timesplit import Times, time_split
from apfed.data.views import MultiViewDataset, compact_index
from apfed.errors import ConfigError, DataError


def stratified_split(
    labels: np.ndarray, test_size: float = 0.2, seed: int = 0, held_out: str = "test"
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified split, exactly ``train_test_split(range(N), stratify=y, random_state=seed)``;
    ``held_out`` names the second part in errors (the test rows, or the validation rows). ``test_size`` 0: every
    row trains and none is held out (a production model trained on every labelled row). Float labels are a
    regression target: the strata are its quantile bins (``quantile_strata``)."""
    if not 0 <= test_size < 1:
        raise ValueError(f"test_size must be a fraction in [0, 1), got {test_size}")
    n = len(labels)
    if test_size == 0:
        return compact_index(np.arange(n), n), compact_index(np.arange(0), n)
    if np.asarray(labels).dtype.kind == "f":
        held = _test_rows(n, test_size)
        labels = quantile_strata(labels, min(10, held, n - held))
    counts = np.bincount(labels)
    if (counts[counts > 0] < 2).any():
        raise DataError("every class needs at least 2 labelled rows for a stratified split")
    classes = int((counts > 0).sum())
    if min(_test_rows(n, test_size), n - _test_rows(n, test_size)) < classes:  # train_test_split's own condition
        raise DataError(
            f"{n} labelled rows are too few for a stratified {test_size:.0%} {held_out} split of {classes} classes:"
            f" the {held_out} and the training rows need at least one row of every class (at least"
            f" {_rows_needed(classes, test_size)} rows)"
        )
    from sklearn.model_selection import train_test_split  # here: loading a model or a passive needs no sklearn

    train, test = train_test_split(np.arange(len(labels)), test_size=test_size, stratify=labels, random_state=seed)
    return compact_index(train, n), compact_index(test, n)


def quantile_strata(values: np.ndarray, bins: int) -> np.ndarray:
    """Each value's quantile bin (0 .. bins-1, equal counts, ties broken by position): the strata of a regression
    target, so that a split's parts span its range alike."""
    n = len(values)
    ranks = np.empty(n, dtype=np.int64)
    ranks[np.argsort(values, kind="stable")] = np.arange(n)
    return ranks * max(1, bins) // max(n, 1)


def regression_split(
    raw_labels: np.ndarray, holder: str, test_size: float = 0.2, seed: int = 0, by_time: TimeOrder | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A regression target: each row's value (float32; NaN for a row with no label), a split of the labelled rows
    stratified by the target's quantiles (with ``by_time``, out of time: ``labelled_split``), and the rows with no
    label; a DataError naming ``holder`` when a label is not a number or no row has one."""
    missing = missing_labels(raw_labels)
    if missing.all():
        raise DataError(f"{holder} no label in any row; the active party's rows need labels, at least some")
    raw = np.asarray(raw_labels)
    values = np.full(len(raw), np.nan, dtype=np.float64)
    labelled = np.flatnonzero(~missing)
    try:
        values[labelled] = raw[labelled].astype(np.float64)
    except (TypeError, ValueError):
        from apfed.data.encoding import parse_number

        bad = [i for i in labelled if parse_number(str(raw[i]).strip()) is None]
        more = f" (and {len(bad) - 1} more such label{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        raise DataError(
            f"{holder} {str(raw[bad[0]])!r}, not a number{more}: a regression target is numeric (--task regression)"
        ) from None
    if not np.isfinite(values[labelled]).all():
        bad = labelled[~np.isfinite(values[labelled])][0]
        raise DataError(f"{holder} {str(raw[bad])!r}: a regression target must be finite")
    if len(labelled) < 2 or np.ptp(values[labelled]) == 0:
        raise DataError(f"{holder} a single value; a regression target needs at least 2 distinct values")
    train, test = _split_of(labelled, values[labelled], test_size, seed, by_time)
    n = len(raw)
    return (
        values.astype(np.float32),
        compact_index(labelled[train], n),
        compact_index(labelled[test], n),
        np.flatnonzero(missing),
    )


@dataclass(frozen=True)
class TimeOrder:
    """An out-of-time split's input: every row's time (``apfed.data.timesplit.Times``), the rows' IDs (to name a
    row with no time) and where the column is, for errors."""

    times: Times
    ids: np.ndarray
    holder: str


def _split_of(
    labelled: np.ndarray, strata: np.ndarray, test_size: float, seed: int, by_time: TimeOrder | None
) -> tuple[np.ndarray, np.ndarray]:
    """Positions among the ``labelled`` rows of the training and test rows: stratified by ``strata``, or the latest
    by time."""
    if by_time is None:
        return stratified_split(strata, test_size, seed)
    return time_split(by_time.times.values[labelled], test_size, by_time.holder, by_time.ids[labelled])


def split_labels(
    raw_labels: np.ndarray,
    holder: str,
    test_size: float = 0.2,
    seed: int = 0,
    task: str = "classification",
    by_time: TimeOrder | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``labelled_split`` for a classification task; for a regression task, ``regression_split`` with no class
    names (an empty list)."""
    if task == "regression":
        return [], *regression_split(raw_labels, holder, test_size, seed, by_time)
    return labelled_split(raw_labels, holder, test_size, seed, by_time)


def missing_labels(raw_labels: np.ndarray) -> np.ndarray:
    """Which rows have no label: NaN or None, an empty text or an NA marker (as in a feature column)."""
    from apfed.data.encoding import is_missing

    y = np.asarray(raw_labels)
    if y.dtype.kind == "f":
        return np.isnan(y)
    if y.dtype.kind in "US":
        return is_missing(y)
    if y.dtype == object:  # None, NaN, or text (vectorized: a pandas column of text is an object array)
        items = y.tolist()
        missing = np.fromiter((v is None or (isinstance(v, float) and v != v) for v in items), bool, len(items))
        text = np.fromiter((isinstance(v, str) for v in items), bool, len(items))
        if text.any():
            missing[text] = is_missing(y[text])
        return missing
    return np.zeros(len(y), dtype=bool)


def labelled_split(
    raw_labels: np.ndarray, holder: str, test_size: float = 0.2, seed: int = 0, by_time: TimeOrder | None = None
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Class names (the sorted distinct labels), each row's class index (int64; -1 for a row with no label), a
    stratified split of the labelled rows (with ``by_time``, the latest ``test_size`` of them by time test:
    ``apfed.data.timesplit.time_split``), and the rows with no label (``missing_labels``: they are never tested,
    and train only the methods that need no label, ``TrainConfig.unlabelled_rows``); a DataError naming ``holder``
    (what holds the labels) when there is no label or a single class."""
    missing = missing_labels(raw_labels)
    if missing.all():
        raise DataError(f"{holder} no label in any row; the active party's rows need labels, at least some")
    labelled = np.flatnonzero(~missing)
    raw = np.asarray(raw_labels)[labelled] if missing.any() else np.asarray(raw_labels)
    class_names, labels = np.unique(raw, return_inverse=True)
    if len(class_names) < 2:
        raise DataError(f"{holder} a single class ({str(class_names[0])!r}); a classifier needs at least 2")
    single = np.flatnonzero(np.bincount(labels) == 1) if test_size and by_time is None else []
    if len(single):
        shown = ", ".join(repr(str(class_names[i])) for i in single[:5]) + (", ..." if len(single) > 5 else "")
        continuous = len(class_names) > 50 and len(class_names) > len(labels) / 4
        hint = (
            f"; {len(class_names)} distinct labels in {len(labels)} rows look like a continuous target: train a"
            " regression (--task regression; in the API task='regression')"
            if continuous
            else "; drop those rows or merge those classes"
        )
        raise DataError(
            f"{holder} {len(single)} class{'es' if len(single) > 1 else ''} with a single row ({shown}): a stratified"
            f" split needs at least 2 rows of every class{hint}"
        )
    train, test = _split_of(labelled, labels, test_size, seed, by_time)
    names = [str(c) for c in class_names]
    if not missing.any():
        return names, labels.astype(np.int64), train, test, np.empty(0, dtype=np.int64)
    n = len(missing)
    codes = np.full(n, -1, dtype=np.int64)
    codes[labelled] = labels
    return names, codes, compact_index(labelled[train], n), compact_index(labelled[test], n), np.flatnonzero(missing)


TASKS = ("classification", "regression")


def check_task(task: str) -> str:
    """``task`` if it is one apfed trains (``TASKS``), else a ConfigError."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return task


def check_test_fraction(test_fraction: float) -> float:
    """``test_fraction`` as a float, or a ConfigError: the share of the labelled rows held out to test, in [0, 1)
    (0: train on every labelled row, with no test figure)."""
    if not 0 <= test_fraction < 1:
        raise ConfigError(
            f"test fraction must be in [0, 1) (0: train on every labelled row, no test rows), got {test_fraction}"
        )
    return float(test_fraction)


def split_name(test_fraction: float) -> str:
    """``80/20`` for 0.2: how messages name the split."""
    return f"{1 - test_fraction:.0%}/{test_fraction:.0%}".replace("%", "")


def _test_rows(n: int, test_size: float) -> int:
    return math.ceil(test_size * n)  # as train_test_split rounds a fraction


def _rows_needed(classes: int, test_size: float) -> int:
    """The fewest rows whose split has at least ``classes`` test and ``classes`` training rows."""
    n = 2 * classes
    while min(_test_rows(n, test_size), n - _test_rows(n, test_size)) < classes:
        n += 1
    return n


def resplit(ds: MultiViewDataset, seed: int) -> MultiViewDataset:
    """``ds`` with its labelled rows split again, stratified and seeded, into as many test rows as it holds; the
    active party's rows that no passive holds (``ds.unmatched``) are split with the others, as a party's whole file
    is. For a comparison whose spread includes the split's (``apfed evaluate --resplit``)."""
    rows, labels = _labelled_rows(ds)
    n_test = len(ds.test_idx) + (int(ds.unmatched.test.sum()) if ds.unmatched is not None else 0)
    # train_test_split holds out ceil(fraction x rows): just under n_test / rows holds out exactly n_test
    return _with_split(ds, rows, *stratified_split(labels, (n_test - 0.5) / len(labels), seed))


def fold(ds: MultiViewDataset, k: int, folds: int) -> MultiViewDataset:
    """``ds`` whose test rows are the ``k``-th of ``folds`` stratified folds of its labelled rows (shuffled, seed 0;
    the rows no passive holds among them), the others training: over k = 0..folds-1 every labelled row is tested
    once (``apfed evaluate --folds``)."""
    from sklearn.model_selection import StratifiedKFold

    rows, labels = _labelled_rows(ds)
    if labels.dtype.kind == "f":  # a regression target: folds stratified by its quantiles
        labels = quantile_strata(labels, min(10, len(labels) // max(folds, 1)))
    counts = np.bincount(labels)
    fewest = int(counts[counts > 0].min())
    if folds < 2:
        raise DataError(f"cross-validation needs at least 2 folds, got {folds}")
    if folds > fewest:
        raise DataError(f"{folds} folds need {folds} labelled rows of every class; the rarest class has {fewest}")
    train, test = list(StratifiedKFold(folds, shuffle=True, random_state=0).split(labels, labels))[k]
    return _with_split(ds, rows, train, test)


def time_fold(ds: MultiViewDataset, k: int, folds: int, window: int = 0) -> MultiViewDataset:
    """``ds`` (split out of time: ``ds.times``) whose test rows are the ``k + 1``-th of ``folds + 1`` periods of
    about equal labelled rows, in time, and whose training rows are every labelled row before that period (an
    expanding window, ``apfed evaluate --folds`` with ``--time-column``): each fold tests a later period, trained
    only on the past, and no fold trains on a row later than those it tests. ``window`` (``--window``): only the
    ``window`` periods just before the tested one train (a sliding window); the earlier rows are in neither part."""
    if ds.times is None:
        raise DataError("folds in time need the rows' times (--time-column)")
    if folds < 2:
        raise DataError(f"cross-validation needs at least 2 folds, got {folds}")
    rows, _ = _labelled_rows(ds)
    u = ds.unmatched
    later = u.times if u is not None and u.times is not None else ds.times[:0]
    times = np.concatenate([ds.times[rows], later])
    order, n = np.sort(times), len(times)
    bounds = [order[(j * n) // (folds + 1)] for j in range(1, folds + 1)] + [np.inf]
    lo, hi = bounds[k], bounds[k + 1]
    start = bounds[k - window] if window and k - window >= 0 else -np.inf
    train, test = np.flatnonzero((times >= start) & (times < lo)), np.flatnonzero((times >= lo) & (times < hi))
    if not len(train) or not len(test):
        raise DataError(
            f"fold {k + 1} of {folds} in time has no {'test' if len(train) else 'training'} row: too many rows share"
            " a time, or too few rows for that many folds"
        )
    when = Times("", times, ds.notes.get("test_split", {}).get("kind", "number")).text
    period = {"train_from": when(times[train].min()), "train_until": when(times[train].max())}
    period |= {"test_from": when(times[test].min()), "test_until": when(times[test].max())}
    out = replace(_with_split(ds, rows, train, test), notes={**ds.notes, "fold_period": period})
    if u is not None:  # the rows no passive holds after the period tested: in neither part (_with_split trains them)
        picked, m = np.concatenate([train, test]), len(rows)
        used = np.zeros(len(u), dtype=bool)
        used[picked[picked >= m] - m] = True
        v = out.unmatched
        kept = {"X": v.X[used], "labels": v.labels[used], "ids": v.ids[used], "test": v.test[used]}
        out = replace(out, unmatched=replace(v, **kept, times=None if v.times is None else v.times[used]))
    return out


def _labelled_rows(ds: MultiViewDataset) -> tuple[np.ndarray, np.ndarray]:
    """The positions of ``ds``'s labelled rows (training and test) and the labels of those rows followed by its
    rows that no passive holds: what a new split draws from."""
    if "overlap" in ds.notes:
        raise DataError("a partial-overlap study draws the passives' rows from the training rows: it keeps its split")
    u = ds.unmatched
    rows = np.sort(np.concatenate([np.asarray(ds.train_idx), np.asarray(ds.test_idx)]))
    return rows, np.concatenate([ds.labels[rows], u.labels if u is not None else ds.labels[:0]])


def _with_split(ds: MultiViewDataset, rows: np.ndarray, train: np.ndarray, test: np.ndarray) -> MultiViewDataset:
    """``ds`` with the split ``train``/``test`` of ``_labelled_rows``'s order: positions below ``len(rows)`` are
    ``rows[p]``, the others its rows that no passive holds."""
    u, m, n = ds.unmatched, len(rows), len(ds.ids)
    is_test = np.zeros(m + (len(u) if u is not None else 0), dtype=bool)
    is_test[test] = True
    return replace(  # in the split's order, as a party file's split lists them
        ds,
        train_idx=compact_index(rows[train[train < m]], n),
        test_idx=compact_index(rows[test[test < m]], n),
        unmatched=None if u is None else replace(u, test=is_test[m:]),
    )
