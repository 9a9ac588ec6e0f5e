"""Split conformal prediction (Vovk et al., 2005; Angelopoulos and Bates, 2021): from the scores of rows the model
did not train on (the validation rows), one number ``q`` that turns each prediction into an interval (a regression)
or a set of classes that holds the truth for at least ``coverage`` of new rows drawn like them.

Scores: a regression's absolute residual in the model's output units (log(1 + y) for a model trained on
``target_transform=log``, so its intervals are asymmetric in y's units); a classification's 1 - the probability of
the true class (LAC, Sadinle et al., 2019), the set then every class of probability at least 1 - q, and always
the predicted one."""

from __future__ import annotations

import math

import numpy as np

from apfed.errors import DataError


def rows_needed(coverage: float) -> int:
    """The fewest calibration rows for which ``coverage`` is reachable: ceil((n + 1) c) <= n."""
    return math.ceil(coverage / (1 - coverage) - 1e-9)


def quantile(scores: np.ndarray, coverage: float) -> float:
    """The ceil((n + 1) c)-th smallest of the n ``scores``: the finite-sample conformal quantile (a new row's score
    is at most it with probability at least c, when the rows are exchangeable)."""
    n = len(scores)
    k = math.ceil((n + 1) * coverage - 1e-9)
    if k > n:
        raise DataError(
            f"conformal={coverage:g} needs at least {rows_needed(coverage)} validation rows, and the run holds {n}:"
            " raise validation, or ask for a lower coverage"
        )
    return float(np.partition(np.asarray(scores, dtype=np.float64), k - 1)[k - 1])


def residual_scores(outputs: np.ndarray, y: np.ndarray, logged: bool) -> np.ndarray:
    """A regression's scores: |y - output| in the output's units (``outputs``: the model's outputs, log(1 + y)
    units when ``logged``)."""
    y = np.asarray(y, dtype=np.float64)
    return np.abs((np.log1p(y) if logged else y) - np.asarray(outputs, dtype=np.float64))


def class_scores(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A classification's scores: 1 - the probability of each row's true class (``y``: class indices)."""
    return 1.0 - np.asarray(proba, dtype=np.float64)[np.arange(len(y)), np.asarray(y, dtype=np.int64)]


def intervals(outputs: np.ndarray, q: float, logged: bool) -> np.ndarray:
    """Each row's interval (rows x 2: lower, upper) in the target's units, from the model's outputs."""
    out = np.asarray(outputs, dtype=np.float64)
    bounds = np.stack([out - q, out + q], 1)
    return np.expm1(bounds) if logged else bounds


def prediction_sets(proba: np.ndarray, q: float) -> np.ndarray:
    """Each row's set of classes (rows x classes, bool): those of probability at least 1 - q, and the most
    probable one (never an empty set)."""
    proba = np.asarray(proba)
    sets = proba >= 1.0 - q - 1e-7  # float32 probabilities against a float64 cut: ties go in
    sets[np.arange(len(proba)), proba.argmax(1)] = True
    return sets


def interval_hits(bounds: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each row's interval (rows x 2) holds its value ``y``, and each interval's width."""
    return (y >= bounds[:, 0]) & (y <= bounds[:, 1]), bounds[:, 1] - bounds[:, 0]


def set_hits(sets: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each row's set of classes (rows x classes, bool) holds its class index ``y`` (an index past the
    classes, a label the model never saw, is in no set), and each set's size."""
    y = np.asarray(y)
    known = y < sets.shape[1]
    covered = known & sets[np.arange(len(y)), np.where(known, y, 0)]
    return covered, sets.sum(1)


def coverage_report(covered: np.ndarray, sizes: np.ndarray, regression: bool) -> dict[str, float]:
    """How the intervals or sets did on labelled rows: the share (%) that held the truth, and their mean width
    (target units) or mean number of classes."""
    key = "interval_width" if regression else "set_size"
    return {"conformal_coverage": float(np.mean(covered) * 100), key: float(np.mean(sizes))}
