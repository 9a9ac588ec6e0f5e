"""Categorical columns and missing values in a party's table.

A column whose values are all text (missing ones aside) is categorical: it becomes one 0/1 feature per distinct
value (one-hot), named ``column=value``. A missing value is an empty field or an NA marker (``NA``, ``N/A``,
``nan``, ``null``, ``None``, ``?``...): NaN in a numeric column, which the preprocessing fills with the column's
training mean, and no category (all zeros) in a categorical one. The ``Encoding`` travels in the standalone model
file, so ``apfed predict`` reads a raw table as training did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from apfed.errors import DataError

MISSING_MARKERS = ("", "na", "n/a", "nan", "null", "none", "<na>", "#n/a", "?")
MAX_CATEGORIES = 100  # more distinct text values than this is more likely an ID or free text than a category


def is_missing(values: np.ndarray) -> np.ndarray:
    """Which of a column's text values mark a missing value (empty, or an NA marker in any case)."""
    return np.isin(np.char.lower(np.char.strip(np.asarray(values, dtype=str))), MISSING_MARKERS)


def is_missing_value(value: str) -> bool:
    """``is_missing`` for one field (the row-by-row reader's test)."""
    return value.strip().lower() in MISSING_MARKERS


@dataclass(frozen=True)
class Encoding:
    """How a table's raw columns become the model's features: numeric columns as they are, each categorical
    column as one 0/1 feature per category, in the columns' order."""

    columns: list[str]
    categories: dict[str, list[str]]  # each categorical column's values, sorted: the order of its features

    def groups(self) -> list[tuple[str, list[int]]]:
        """Each raw column and the positions of its features (a categorical column's one per category)."""
        out, k = [], 0
        for c in self.columns:
            n = len(self.categories[c]) if c in self.categories else 1
            out.append((c, list(range(k, k + n))))
            k += n
        return out

    @property
    def width(self) -> int:
        return sum(len(positions) for _, positions in self.groups())

    def feature_names(self) -> list[str]:
        names: list[str] = []
        for c in self.columns:
            names += [f"{c}={v}" for v in self.categories[c]] if c in self.categories else [c]
        return names

    def expand(self, numeric: np.ndarray, text: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, int]]:
        """The model's features (float32, rows x ``width``) from the numeric columns' values (rows x their count,
        in order) and each categorical column's raw values; also, per categorical column, how many values were
        neither a known category nor missing (they get no category, as a missing one does)."""
        n = len(numeric)
        out = np.zeros((n, self.width), np.float32)
        unknown: dict[str, int] = {}
        k = j = 0
        for c in self.columns:
            if c not in self.categories:
                out[:, k] = numeric[:, j]
                j, k = j + 1, k + 1
                continue
            known = np.asarray(self.categories[c], dtype=str)
            values = np.char.strip(np.asarray(text[c], dtype=str))
            at = np.minimum(np.searchsorted(known, values), len(known) - 1)
            hit = known[at] == values
            rows = np.flatnonzero(hit)
            out[rows, k + at[rows]] = 1.0
            if count := int((~hit & ~is_missing(values)).sum()):
                unknown[c] = count
            k += len(known)
        return out, unknown

    def to_json(self) -> dict:
        return {"columns": self.columns, "categories": self.categories}

    @classmethod
    def from_json(cls, d: dict) -> Encoding:
        """The encoding stored in a model file; ValueError names what is malformed."""
        columns, categories = d.get("columns"), d.get("categories")
        if not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)):
            raise ValueError("'encoding' has no list of column names")
        if not (isinstance(categories, dict) and set(categories) <= set(columns)):
            raise ValueError("'encoding' has categories for columns it does not name")
        for c, values in categories.items():
            ok = isinstance(values, list) and values and all(isinstance(v, str) for v in values)
            if not ok or values != sorted(set(values)):
                raise ValueError(f"'encoding' categories of {c!r} are not a sorted list of distinct names")
        return cls(list(columns), {c: list(v) for c, v in categories.items()})


def find_categories(columns: list[str], text: Mapping[str, np.ndarray], where: str) -> Encoding:
    """The encoding of a table whose ``text`` columns (name -> raw values) are categorical: each one's distinct
    values, missing ones aside. DataError when a column has more than ``MAX_CATEGORIES`` of them."""
    categories = {}
    for c, values in text.items():
        values = np.char.strip(np.asarray(values, dtype=str))
        distinct = np.unique(values[~is_missing(values)])
        if len(distinct) > MAX_CATEGORIES:
            if _all_dates(distinct):
                raise DataError(
                    f"{where}: column {c!r} holds dates, not features; name it with --time-column to test on the"
                    " latest rows (the active party's file), or drop it"
                )
            raise DataError(
                f"{where}: column {c!r} holds text with {len(distinct)} distinct values, too many for a categorical"
                f" column (at most {MAX_CATEGORIES}); encode it as numbers or drop it"
            )
        categories[c] = [str(v) for v in distinct]
    return Encoding(list(columns), categories)


def _all_dates(values: np.ndarray) -> bool:
    """Whether every one of these text values is an ISO date (``2024-03-01``, ``2024-03-01 14:30``)."""
    import warnings

    with warnings.catch_warnings():  # numpy warns about a time zone offset, which it reads as UTC
        warnings.simplefilter("ignore")
        try:
            values.astype("datetime64[s]")
        except ValueError:
            return False
    return True


def describe(where: str, view) -> list[str]:
    """Lines telling the user how a party's table was read (``view``: an ``apfed.data.views.View``): its
    categorical columns and its missing values."""
    lines = []
    if view.encoding is not None and view.encoding.categories:
        cats = ", ".join(f"{c} ({len(v)} values)" for c, v in view.encoding.categories.items())
        lines.append(f"{where}: categorical columns, one feature per value: {cats}")
        dated = [c for c, v in view.encoding.categories.items() if len(v) > 1 and _all_dates(np.asarray(v))]
        if dated:  # a model that learns each month as a category meets only months it never saw
            lines.append(
                f"{where}: warning: {', '.join(repr(c) for c in dated)} holds dates, read as categories; name it"
                " with --time-column to test on the latest rows, or drop it"
            )
    X = view.X
    if isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind == "f":
        holes = np.isnan(X).sum(0)
        if holes.any():
            named = [view.columns[j] for j in np.flatnonzero(holes)]
            more = f" and {len(named) - 5} more" if len(named) > 5 else ""
            lines.append(
                f"{where}: {int(holes.sum())} missing values in {len(named)} column{'s' if len(named) > 1 else ''}"
                f" ({', '.join(named[:5])}{more}), filled with each column's training mean"
            )
    return lines


def as_text(values: np.ndarray) -> np.ndarray:
    """A column's values as strings (None as an empty, missing, value)."""
    return np.asarray(["" if v is None else str(v) for v in np.asarray(values, dtype=object).tolist()], dtype=str)


def as_numbers(values: np.ndarray) -> np.ndarray | None:
    """A column's values as float32, NaN where missing (None, NaN, an empty string or an NA marker); None when a
    value is neither a number nor missing."""
    values = np.asarray(values)
    if values.dtype.kind in "fiu":
        return values.astype(np.float32)
    text = as_text(values)
    missing = is_missing(text)
    out = np.full(len(text), np.nan, np.float32)
    try:
        out[~missing] = text[~missing].astype(np.float32)
    except ValueError:
        return None
    return out


def parse_number(value: str, decimal_comma: bool = False) -> float | None:
    """A text field's number as numpy's parser reads one (spaces around it are fine, ``1_000`` is not; with
    ``decimal_comma``, ``2,5`` is 2.5), or None."""
    if "_" in value:
        return None
    if decimal_comma and value.count(",") == 1 and "." not in value:
        value = value.replace(",", ".")
    try:
        return float(value)
    except ValueError:
        return None


def is_number(value: str) -> bool:
    """Whether a text value reads as a number."""
    return parse_number(value) is not None


def encode_table(where: str, arr: np.ndarray, columns: list[str]) -> tuple[np.ndarray, list[str], Encoding | None]:
    """An in-memory table (2-D, an object or string array) whose columns hold numbers or text: the features
    (numbers as float32, NaN where missing: None, NaN or an NA marker; text columns one-hot), their names, and the
    encoding when some column is text. A column mixing numbers and text is a DataError."""
    numeric, text = [], {}
    for j, c in enumerate(columns):
        if (col := as_numbers(arr[:, j])) is not None:
            numeric.append(col)
            continue
        values = as_text(arr[:, j])
        present = values[~is_missing(values)].tolist()
        if any(map(is_number, present)):
            first = next(v for v in present if not is_number(v))
            raise DataError(
                f"{where}: column {c!r} mixes numbers and text (e.g. {first!r}); a column holds numbers or only"
                " text (a categorical column)"
            )
        text[c] = values
    return one_hot(where, columns, np.stack(numeric, 1) if numeric else np.zeros((len(arr), 0), np.float32), text)


def one_hot(
    where: str, columns: list[str], numeric: np.ndarray, text: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, list[str], Encoding | None]:
    """A table's features from its numeric columns' values (rows x their count, in order) and its text columns'
    (name -> raw values): the features, their names and the encoding (None, and the numbers as they are, when no
    column is text)."""
    if not text:
        return numeric, list(columns), None
    encoding = find_categories(columns, text, where)
    X, _ = encoding.expand(numeric, text)
    return X, encoding.feature_names(), encoding
