"""How well a standalone model does on labelled rows of the active party's own data (``apfed score``,
``StandaloneModel.score_report``): overall metrics, each class's precision and recall, and the confusion matrix.

Labels are matched to the model's class names as text: exactly, then without surrounding spaces, then (when every
class name is a number) by value, so that ``1.0`` is class ``1``. A label the model never saw is kept as a class
of its own: its rows count as wrong, and the report names it."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from apfed.data.encoding import Encoding, parse_number
from apfed.errors import DataError
from apfed.metrics import calibration_metrics, classification_metrics, ranking_metrics, regression_metrics


def label_indices(labels: np.ndarray, class_names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Each label's class index (int64) and the labels that are no class of the model, in order of first
    appearance; those get the indices after the model's classes."""
    exact = {c: i for i, c in enumerate(class_names)}
    stripped = {c.strip(): i for i, c in enumerate(class_names)}
    values = [parse_number(c.strip()) for c in class_names]
    by_value = {v: i for i, v in enumerate(values)} if all(v is not None for v in values) else {}
    distinct, first, inverse = np.unique(np.asarray(labels, dtype=str), return_index=True, return_inverse=True)
    index = np.empty(len(distinct), dtype=np.int64)
    unseen: list[str] = []
    for k in np.argsort(first, kind="stable"):  # unseen labels numbered in the order the rows show them
        v = str(distinct[k])
        i = exact.get(v, stripped.get(v.strip(), by_value.get(parse_number(v.strip()), -1) if by_value else -1))
        if i < 0:
            i = len(class_names) + len(unseen)
            unseen.append(v)
        index[k] = i
    return index[inverse.reshape(-1)], unseen


CUTOFFS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def parse_threshold(text: str, class_names: list[str]) -> tuple[int, float]:
    """``"CLASS=T"`` -> (the class's index, T): predict that class wherever its probability is at least T."""
    name, sep, value = str(text).rpartition("=")
    if not sep:
        raise DataError(f"--threshold {text}: name the class, CLASS=T (the model's classes: {_listed(class_names)})")
    if name not in class_names:
        raise DataError(f"--threshold {text}: {name!r} is no class of the model ({_listed(class_names)})")
    t = parse_number(value.strip())
    if t is None or not 0 < t < 1:
        raise DataError(f"--threshold {text}: the cut-off must be a probability between 0 and 1, got {value!r}")
    return class_names.index(name), float(t)


def thresholded(proba: np.ndarray, cls: int, t: float) -> np.ndarray:
    """Predicted class indices with a cut-off: ``cls`` wherever its probability is at least ``t``, elsewhere the
    most probable of the other classes."""
    others = proba.copy()
    others[:, cls] = -1.0
    return np.where(proba[:, cls] >= t, cls, others.argmax(1))


def predictions(proba: np.ndarray, threshold: tuple[int, float] | None = None) -> np.ndarray:
    """Predicted class indices: the most probable class, or with ``threshold`` (``parse_threshold``) its cut-off."""
    return proba.argmax(1) if threshold is None else thresholded(proba, *threshold)


def paired_comparison(right_a: np.ndarray, right_b: np.ndarray) -> dict:
    """Two models scored on the same rows (``right_*``: whether each row was predicted right): the accuracy
    difference a − b in points with its 95 % interval (paired proportions, Wald), how many rows only one of them
    gets right, and McNemar's exact test: the two-sided probability, were the two equally accurate, of the rows
    that only one gets right splitting at least this unevenly (binomial, one half each)."""
    from scipy.stats import binomtest

    n = len(right_a)
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    diff = (only_a - only_b) / n
    half = 1.959964 * math.sqrt(max((only_a + only_b) / n - diff**2, 0.0) / n)
    return {
        "rows": n,
        "accuracy_difference": 100 * diff,
        "ci95": [100 * (diff - half), 100 * (diff + half)],
        "only_first_right": only_a,
        "only_second_right": only_b,
        "mcnemar_p": float(binomtest(only_a, only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0,
    }


def paired_regression_comparison(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict:
    """Two regression models scored on the same rows: the difference of their mean squared errors, a − b, with its
    95 % interval and the paired t-test's two-sided p on the rows' squared errors (a Diebold-Mariano test with
    independent rows), and on how many rows each is the closer."""
    from scipy.stats import t as student

    sq_a, sq_b = (pred_a - y) ** 2, (pred_b - y) ** 2
    d = sq_a - sq_b
    n, mean = len(d), float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    half = float(student.ppf(0.975, n - 1)) * se if n > 1 else math.inf
    p = float(2 * student.sf(abs(mean) / se, n - 1)) if se > 0 else (1.0 if mean == 0 else 0.0)
    return {
        "rows": n,
        "mse_difference": mean,
        "ci95": [mean - half, mean + half],
        "first_closer": int((sq_a < sq_b).sum()),
        "second_closer": int((sq_b < sq_a).sum()),
        "paired_t_p": p,
    }


def cutoff_table(y: np.ndarray, p: np.ndarray, cutoffs=CUTOFFS) -> dict:
    """Precision, recall and F1 (in %) of flagging a class wherever its probability ``p`` is at least each
    cut-off, against ``y`` (True: a row of the class); and the cut-off with the best F1 on these rows (the lowest
    probability among the rows it flags: chosen here, so its F1 here is optimistic)."""
    order = np.argsort(-p, kind="stable")
    hits = np.cumsum(y[order])  # true positives when the top k rows are flagged
    flagged = np.arange(1, len(p) + 1)
    total = int(y.sum())

    def row(k: int, cutoff: float) -> dict:
        tp = int(hits[k - 1]) if k else 0
        precision = 100 * tp / k if k else None
        recall = 100 * tp / total if total else None
        f1 = 2 * tp / (k + total) * 100 if k + total else None
        return {"cutoff": cutoff, "flagged": k, "precision": precision, "recall": recall, "f1": f1}

    rows = [row(int((p >= c).sum()), c) for c in cutoffs]
    f1 = 2 * hits / (flagged + total)
    last = np.r_[p[order][1:] < p[order][:-1], True]  # a cut-off cannot split rows of equal probability
    k = int(np.argmax(np.where(last, f1, -1))) + 1
    return {"cutoffs": rows, "best_f1": row(k, float(p[order][k - 1]))}


def score_report(
    y: np.ndarray,
    proba: np.ndarray,
    class_names: list[str],
    unseen: list[str],
    threshold: tuple[int, float] | None = None,
) -> dict:
    """Metrics of predicted probabilities ``proba`` (rows x the model's classes) against class indices ``y``
    (from ``label_indices``; ``unseen`` names the indices past the model's classes).

    Accuracy is in % of every row. Precision, recall and F1 (in %) are averaged over the model's classes that the
    rows hold or the model predicts (macro: each class alike; weighted: by its rows), so a label the model never
    saw lowers them only through the rows it takes from the classes it was given. A class's precision is None
    when no row is predicted as it, its recall when no row holds it. Over the rows whose label is a class of the
    model: ROC-AUC and average precision (0–1; with two classes, of the rarer class in these rows, the class
    training took as positive: fraud, churn, a diagnosis), and log-loss and the Brier score (the squared distance
    of the probabilities to the one-hot label, summed over the classes; 0 is perfect, 2 the worst), which say how
    well calibrated the probabilities are. ``threshold`` (class index, cut-off; ``parse_threshold``): the predictions
    flag that class wherever its probability reaches the cut-off instead of taking the most probable class; the
    report's ``cutoffs`` then say how each cut-off would do for that class (``cutoff_table``)."""
    from sklearn.metrics import precision_recall_fscore_support

    if len(y) == 0:
        raise DataError("no labelled row to score")
    names = [*class_names, *unseen]
    pred = predictions(proba, threshold)
    known = y < len(class_names)
    if not known.any():
        raise DataError(
            f"no label is a class of the model ({_listed(class_names)}); the labels read: {_listed(unseen)}: check"
            " the label column"
        )
    positive = 1
    if len(class_names) == 2:
        counts = np.bincount(y[known], minlength=2)
        positive = 0 if counts[0] < counts[1] else 1
    # the averages are over the model's classes that these rows have or that the model predicts here (a class
    # with neither says nothing of the model: scikit-learn's own default leaves it out too)
    model_classes = sorted({int(c) for c in np.concatenate([y[known], pred])})
    metrics = classification_metrics(y, pred, labels=model_classes)
    metrics.update(ranking_metrics(y[known], proba[known], positive))  # the rows the model has a column for
    metrics.update(calibration_metrics(y[known], proba[known]))
    p, r, f, support = precision_recall_fscore_support(y, pred, labels=list(range(len(names))), zero_division=0)
    predicted = np.bincount(pred, minlength=len(names))
    confusion = np.zeros((len(names), len(class_names)), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    per_class = [
        {
            "class": n,
            "rows": int(support[i]),
            "predicted": int(predicted[i]),
            "precision": float(p[i] * 100) if predicted[i] else None,  # no row predicted as the class
            "recall": float(r[i] * 100) if support[i] else None,  # no row of the class
            "f1": float(f[i] * 100) if predicted[i] or support[i] else None,
            "known_to_model": i < len(class_names),
        }
        for i, n in enumerate(names)
    ]
    cutoffs = None  # how each cut-off would do: for the class of the threshold, or the positive one of two
    if threshold is not None or len(class_names) == 2:
        flagged = positive if threshold is None else threshold[0]
        cutoffs = {"class": class_names[flagged], **cutoff_table(y == flagged, proba[:, flagged])}
    return {
        "rows": len(y),
        "metrics": metrics,
        **({"threshold": {"class": class_names[threshold[0]], "cutoff": threshold[1]}} if threshold else {}),
        "cutoffs": cutoffs,
        "positive_class": class_names[positive] if len(class_names) == 2 else None,
        "classes": per_class,
        "unseen_labels": {n: int(support[len(class_names) + k]) for k, n in enumerate(unseen)},
        "confusion": {"true": names, "predicted": list(class_names), "counts": confusion.tolist()},
    }


def regression_report(y: np.ndarray, pred: np.ndarray) -> dict:
    """A regression model's predictions ``pred`` against the numbers ``y`` (NaN: no label, left out): R², RMSE and
    MAE (``apfed.metrics.regression_metrics``), and the mean target and prediction (a bias shows there)."""
    has = ~np.isnan(y)
    if not has.any():
        raise DataError("no labelled row to score")
    y, pred = y[has], pred[has]
    return {
        "rows": int(has.sum()),
        "metrics": regression_metrics(y, pred),
        "target_mean": float(y.mean()),
        "prediction_mean": float(pred.mean()),
    }


def _listed(names: list[str], most: int = 5) -> str:
    return ", ".join(repr(n) for n in names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def feature_groups(
    columns: list[str] | None, encoding: Encoding | None, n_features: int
) -> list[tuple[str, list[int]]]:
    """Each raw column of a tabular model and the positions of its features: a categorical column's one 0/1
    feature per category together, any other column its own feature (named ``feature j`` without names)."""
    if encoding is not None:
        return encoding.groups()
    names = columns if columns and len(columns) == n_features else [f"feature {j}" for j in range(n_features)]
    return [(n, [j]) for j, n in enumerate(names)]


def permutation_importance(
    predict_proba: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    groups: list[tuple[str, list[int]]],
    repeats: int = 5,
    seed: int = 0,
    progress: Callable[[], object] | None = None,
    regression: bool = False,
) -> list[dict]:
    """How much each column matters to the model on these rows: the accuracy it loses (in points) when the
    column's values are shuffled across the rows, which breaks its link to the label and keeps its distribution
    (mean and standard deviation over ``repeats`` shuffles; a categorical column's features move together).
    ``X``: the model's features (rows x features), ``y``: class indices as ``label_indices`` gives them.
    Sorted by the loss, largest first; ``progress`` is called once per column. ``regression``: ``predict_proba``
    gives each row's value and ``y`` holds numbers; the loss is in R² (``r2_drop``)."""
    if repeats < 1:
        raise DataError(f"repeats must be at least 1, got {repeats}")

    def score(out: np.ndarray) -> float:
        return regression_metrics(y, out[:, 0])["r2"] if regression else float((out.argmax(1) == y).mean() * 100)

    key = "r2_drop" if regression else "accuracy_drop"
    X = np.array(X, dtype=np.float32)  # a copy: the shuffles write into it
    base = score(predict_proba(X))
    rng = np.random.default_rng(seed)
    out = []
    for name, idx in groups:
        kept = X[:, idx].copy()
        drops = []
        for _ in range(repeats):
            X[:, idx] = kept[rng.permutation(len(X))]
            drops.append(base - score(predict_proba(X)))
        X[:, idx] = kept
        out.append({"column": name, key: float(np.mean(drops)), "std": float(np.std(drops))})
        if progress is not None:
            progress()
    return sorted(out, key=lambda r: -r[key])


MAX_GROUPS = 50  # score --by: the most groups a column may split the rows into


def groups_of(values: np.ndarray, column: str, most: int = MAX_GROUPS, bins: int = 0) -> list[tuple[str, np.ndarray]]:
    """The rows of each value of a column (text; an empty or NA cell is the group ``(missing)``), the largest
    group first: (value, row mask) pairs. More than ``most`` values is an error: a group per row says nothing.
    ``bins`` > 0: a column of numbers is cut into that many bands of about equal rows (its quantiles over these
    rows), each named by its range, ``[19, 35)``, in order."""
    from apfed.data.encoding import is_missing

    text = np.char.strip(np.asarray(values).astype(str))
    missing = is_missing(text)
    if bins:
        return _bands(text, missing, column, bins)
    text = np.where(missing, "(missing)", text)
    names, inverse, counts = np.unique(text, return_inverse=True, return_counts=True)
    if len(names) > most:
        raise DataError(
            f"--by {column!r}: {len(names):,} distinct values; it takes a column of at most {most} groups (a category,"
            " a region, an age band)"
        )
    order = np.argsort(-counts, kind="stable")
    return [(str(names[i]), inverse == i) for i in order]


def classification_groups(
    groups: list[tuple[str, np.ndarray]],
    y: np.ndarray,
    proba: np.ndarray,
    n_classes: int,
    threshold: tuple[int, float] | None = None,
    flagged: int | None = None,
) -> list[dict]:
    """Each group's rows, accuracy and macro-F1 (%), ROC-AUC (where its rows hold two classes or more), and with
    ``flagged`` (a class index: the positive class of two, or the threshold's) the share of its rows predicted as
    that class (``flagged_rate``, demographic parity) and that class's recall (``flagged_recall``, equal
    opportunity). ``y``: class indices (``label_indices``; past ``n_classes``: a label the model never saw)."""
    pred = predictions(proba, threshold)
    out = []
    for value, mask in groups:
        yg, pg = y[mask], pred[mask]
        known = yg < n_classes
        row = {"value": value, "rows": int(mask.sum())}
        row.update(
            {k: v for k, v in classification_metrics(yg, pg).items() if k in ("accuracy", "macro_f1")},
            **{k: v for k, v in ranking_metrics(yg[known], proba[mask][known]).items() if k == "roc_auc"},
        )
        if flagged is not None:
            of = yg == flagged
            row["flagged_rate"] = float((pg == flagged).mean() * 100)
            row["flagged_recall"] = float((pg[of] == flagged).mean() * 100) if of.any() else None
        out.append(row)
    return out


def regression_groups(groups: list[tuple[str, np.ndarray]], y: np.ndarray, pred: np.ndarray) -> list[dict]:
    """Each group's rows, R² (None with fewer than 2 rows), RMSE and MAE, and its mean label and prediction (a
    bias for one group shows there)."""
    out = []
    for value, mask in groups:
        m = regression_metrics(y[mask], pred[mask])
        out.append(
            {
                "value": value,
                "rows": int(mask.sum()),
                "r2": m["r2"] if mask.sum() >= 2 else None,
                "rmse": m["rmse"],
                "mae": m["mae"],
                "target_mean": float(y[mask].mean()),
                "prediction_mean": float(pred[mask].mean()),
            }
        )
    return out


def add_group_coverage(rows: list[dict], groups: list[tuple[str, np.ndarray]], covered: np.ndarray) -> None:
    """Each group's share (%) of rows whose conformal interval or set held the truth: the promise holds over all
    rows, not within each group, and this shows where it falls short."""
    for row, (_, mask) in zip(rows, groups, strict=True):
        row["conformal_coverage"] = float(covered[mask].mean() * 100)


def _bands(text: np.ndarray, missing: np.ndarray, column: str, bins: int) -> list[tuple[str, np.ndarray]]:
    """``groups_of`` with ``bins``: the rows of each band of a column of numbers or of dates (ISO: ``2024-03-01``;
    a band is then a period, named by its first and last dates), in order, then ``(missing)``."""
    from apfed.data.timesplit import is_time, parse_times

    try:
        times = parse_times(text, column, "--by")
    except DataError:
        bad = next(str(v) for v in text[~missing] if not is_time(str(v)))
        raise DataError(
            f"--by {column!r} --bins: {bad!r} is neither a number nor an ISO date; bins cut a column of numbers or"
            " dates"
        ) from None
    values = times.values
    known = values[~missing]
    if not len(known):
        raise DataError(f"--by {column!r}: no row has a value")
    dated = times.kind == "date"  # a date band starts on a date of the data, not between two
    edges = np.unique(np.quantile(known, np.linspace(0, 1, bins + 1), method="higher" if dated else "linear"))
    name = times.text if dated else (lambda v: f"{v:.4g}")
    out = []
    for k in range(max(len(edges) - 1, 1)):
        lo, hi = edges[k], edges[min(k + 1, len(edges) - 1)]
        last = k + 2 >= len(edges)
        mask = ~missing & (values >= lo) & ((values <= hi) if last else (values < hi))
        out.append((f"[{name(lo)}, {name(hi)}{']' if last else ')'}", mask))
    if missing.any():
        out.append(("(missing)", missing))
    return out
