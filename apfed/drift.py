"""How far new rows have moved from the training rows, column by column: the population stability index (PSI).

At training time the active party's model file keeps a profile of its training rows (``profile``): for each numeric
column, its deciles and the share of rows in each band between them, and the share missing; for each categorical
column, the share of each category (and of none). ``compare`` bins new rows the same way and gives each column's
PSI = sum over bins of (new share - training share) x ln(new share / training share). The usual reading: below 0.1 the
column is stable, 0.1 to 0.25 it moved, above 0.25 it shifted: the model meets rows unlike those it learned from.

The model's outputs are profiled the same way (``output_profile``, any model, image ones too): the share of each
predicted class and the deciles of the score (the positive class's probability with two classes, else the predicted
class's), or of a regression's predicted value, on rows held out from training (the test rows, else the validation
rows): a model's outputs on the rows it learned from are surer than on new rows drawn like them."""

from __future__ import annotations

import math

import numpy as np

from apfed.errors import ApfedError

BINS = 10  # decile bands per numeric column
PROFILE_ROWS = 100_000  # the training rows a profile is computed from, at most (drawn at random beyond)
FLOOR = 1e-4  # a bin's share is at least this in the PSI: an empty bin would make it infinite
MOVED, SHIFTED = 0.1, 0.25
NOISY = 0.05  # a chance level (``chance_level``) from which some stable columns read ``moved``


def sample_rows(rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """The training rows a profile is computed from: all of them, or ``PROFILE_ROWS`` drawn at random (in order)."""
    if len(rows) <= PROFILE_ROWS:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, PROFILE_ROWS, replace=False))


def profile(X: np.ndarray, groups: list[tuple[str, list[int]]], categorical: set[str], rows: int) -> dict:
    """The profile of training feature rows ``X`` (rows x features, raw: before standardization, NaN where a value
    is missing; ``sample_rows`` of the ``rows`` training rows): ``groups`` gives each raw column's features (a
    categorical column's one 0/1 feature per category, ``categorical`` names those columns)."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    columns = []
    for name, positions in groups:
        if name in categorical:
            block = np.nan_to_num(X[:, positions])
            shares = block.mean(0)
            columns.append(
                {"column": name, "features": positions, "shares": _rounded(shares), "none": _share(block.sum(1) == 0)}
            )
            continue
        j = positions[0]
        v = X[:, j]
        present = v[~np.isnan(v)]
        edges = np.unique(np.quantile(present, np.arange(1, BINS) / BINS)) if len(present) else np.zeros(0)
        counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
        columns.append(
            {
                "column": name,
                "feature": j,
                "edges": [float(e) for e in edges],
                "shares": _rounded(counts / max(len(v), 1)),
                "missing": _share(np.isnan(v)),
                "median": float(np.median(present)) if len(present) else None,
            }
        )
    return {"rows": int(rows), "columns": columns}


def _share(mask: np.ndarray) -> float:
    return round(float(mask.mean()), 6) if len(mask) else 0.0


def _rounded(shares: np.ndarray) -> list[float]:
    return [round(float(s), 6) for s in shares]


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """The population stability index of shares ``actual`` against ``expected`` (each summing to about 1)."""
    p = np.maximum(np.asarray(expected, dtype=np.float64), FLOOR)
    q = np.maximum(np.asarray(actual, dtype=np.float64), FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def compare(prof: dict, X: np.ndarray) -> list[dict]:
    """Each profiled column's PSI on new feature rows ``X`` (the model's features, raw, NaN where missing), with
    its training and new missing shares (and medians, for a numeric column), the largest PSI first."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    if not len(X):
        raise ApfedError("no rows to compare with the training rows")
    out = []
    for c in prof["columns"]:
        if "features" in c:  # categorical
            block = np.nan_to_num(X[:, c["features"]])
            new = np.append(block.mean(0), (block.sum(1) == 0).mean())
            row = {"column": c["column"], "kind": "categorical", "psi": psi([*c["shares"], c["none"]], new)}
            row |= {"train_missing": c["none"], "new_missing": float(new[-1])}
            names = np.asarray(c["shares"])
            moved = int(np.argmax(np.abs(new[:-1] - names))) if len(names) else 0
            row |= {"most_moved": moved, "train_share": float(names[moved]) if len(names) else 0.0}
            row["new_share"] = float(new[moved]) if len(names) else 0.0
        else:
            v = X[:, c["feature"]]
            present = v[~np.isnan(v)]
            counts = np.bincount(np.searchsorted(c["edges"], present, side="right"), minlength=len(c["edges"]) + 1)
            missing = float(np.isnan(v).mean())
            shares = counts / len(v)
            value = psi([*c["shares"], c["missing"]], [*shares, missing])
            row = {"column": c["column"], "kind": "numeric", "psi": value}
            row |= {"train_missing": c["missing"], "new_missing": missing, "train_median": c["median"]}
            row["new_median"] = float(np.median(present)) if len(present) else None
        row["verdict"] = verdict(row["psi"])
        out.append(row)
    return sorted(out, key=lambda r: -r["psi"])


OUTPUT_SOURCES = ("test", "validation", "training")  # the rows an output profile is computed on, by preference


def output_features(outputs: np.ndarray, regression: bool, positive: int | None = None) -> np.ndarray:
    """A model's outputs (rows x classes of probabilities, or rows x 1 predicted values) as profile features: a
    classification's predicted class, one 0/1 feature per class, then its score (with two classes the probability of
    class ``positive``, else the predicted class's); a regression's predicted value."""
    outputs = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    if regression:
        return outputs[:, :1]
    predicted = np.eye(outputs.shape[1])[outputs.argmax(1)]
    score = outputs[:, positive] if outputs.shape[1] == 2 and positive is not None else outputs.max(1)
    return np.column_stack([predicted, score])


def output_columns(
    class_names: list[str], regression: bool, positive: int | None = None
) -> list[tuple[str, list[int]]]:
    """The names and features of ``output_features``'s columns: ``predicted class`` and the score, or ``prediction``."""
    if regression:
        return [("prediction", [0])]
    c = len(class_names)
    score = f"P({class_names[positive]})" if c == 2 and positive is not None else "confidence"
    return [("predicted class", list(range(c))), (score, [c])]


def output_profile(
    outputs: np.ndarray, class_names: list[str], regression: bool, source: str, rows: int, positive: int | None = None
) -> dict:
    """The profile of a model's ``outputs`` on ``rows`` rows of ``source`` (one of ``OUTPUT_SOURCES``; the outputs
    of at most ``PROFILE_ROWS`` of them): what ``compare_outputs`` reads new rows' outputs against."""
    groups = output_columns(class_names, regression, positive)
    prof = profile(output_features(outputs, regression, positive), groups, {"predicted class"}, rows)
    return prof | {"source": source, **({"positive": positive} if len(class_names) == 2 and not regression else {})}


def compare_outputs(prof: dict, outputs: np.ndarray, regression: bool) -> list[dict]:
    """Each output column's PSI (``compare``) on new rows' ``outputs``, marked ``output``."""
    rows = compare(prof, output_features(outputs, regression, prof.get("positive")))
    return [r | {"output": True} for r in rows]


def check_output_profile(prof, class_names: list[str], regression: bool) -> None:
    """Raise ApfedError naming what is wrong with a model file's ``output_profile``."""
    outputs = 1 if regression else len(class_names) + 1
    check_profile(prof, outputs, "output_profile")
    if prof.get("source") not in OUTPUT_SOURCES:
        raise ApfedError("'output_profile' has no source of its rows")
    positive = prof.get("positive")
    if len(class_names) == 2 and not regression and positive not in (0, 1):
        raise ApfedError("'output_profile' has no positive class")
    names = [name for name, _ in output_columns(class_names, regression, positive)]
    if [c["column"] for c in prof["columns"]] != names:
        raise ApfedError("'output_profile' does not profile this model's outputs")


def chance_level(rows: int, training_rows: int, bins: int = BINS) -> float:
    """About what a column's PSI reads by chance alone when ``rows`` new rows are drawn like the training rows
    (``training_rows`` profiled): (bins - 1) x (1 / rows + 1 / training rows), the expectation of a chi-squared
    statistic scaled to the shares, which the PSI is close to for small differences."""
    return (bins - 1) * (1 / max(rows, 1) + 1 / max(min(training_rows, PROFILE_ROWS), 1))


def verdict(value: float) -> str:
    """``stable`` (PSI below 0.1), ``moved`` (to 0.25) or ``shifted``."""
    return "shifted" if value > SHIFTED else "moved" if value >= MOVED else "stable"


def check_profile(prof, n_features: int, key: str = "profile") -> None:
    """Raise ApfedError naming what is wrong with a model file's ``profile`` (``n_features``: the model's; ``key``:
    the metadata's name for it)."""

    def ensure(ok: bool, what: str) -> None:
        if not ok:
            raise ApfedError(f"'{key}' {what}")

    def shares(v) -> bool:
        return isinstance(v, list) and all(_finite(x) and 0 <= x <= 1 for x in v)

    ensure(isinstance(prof, dict) and isinstance(prof.get("columns"), list), "is not a mapping with columns")
    ensure(isinstance(prof.get("rows"), int) and prof["rows"] >= 1, "has no row count")
    for c in prof["columns"]:
        ensure(isinstance(c, dict) and isinstance(c.get("column"), str), "has a column with no name")
        if "features" in c:
            f = c["features"]
            ok = isinstance(f, list) and all(isinstance(j, int) and 0 <= j < n_features for j in f)
            ok = ok and shares(c.get("shares")) and len(c["shares"]) == len(f) and shares([c.get("none")])
            ensure(ok, f"column {c['column']!r} is malformed")
        else:
            j, edges = c.get("feature"), c.get("edges")
            ok = isinstance(j, int) and 0 <= j < n_features and isinstance(edges, list) and all(map(_finite, edges))
            ok = ok and edges == sorted(edges) and shares(c.get("shares")) and len(c["shares"]) == len(edges) + 1
            ok = ok and shares([c.get("missing")]) and (c.get("median") is None or _finite(c.get("median")))
            ensure(ok, f"column {c['column']!r} is malformed")


def _finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
