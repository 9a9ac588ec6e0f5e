"""What one party could infer about the other's data from what it holds: two attacks on per-row vectors, for
``apfed leakage``.

- **Labels, by a passive party** (the model-completion attack of Fu et al., USENIX Security 2022): the passive knows
  the labels of a few rows per class and fits a logistic regression on per-row vectors (its own features, its
  trained encoder's embeddings, or what the active party sent it), then labels every other row.
- **Features, by the active party**: it knows a passive's features on a share of the rows and fits a ridge
  regression from per-row vectors (its own features, or what the passive sent it) to them, then predicts the
  passive's features on every other row; the figure is R² over the passive's standardized features.

Each figure is compared with the same attack on what the party holds without any message: the difference is what
the messages, or the model they trained, add."""

from __future__ import annotations

import numpy as np

from apfed.errors import ApfedError


def _flat(x: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(x, dtype=np.float64).reshape(len(x), -1))


def _standardizer(x: np.ndarray):
    """Standardizes rows with the mean and deviation of ``x`` (NaN counts as 0)."""
    x = _flat(x)
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 0, std, 1.0)
    return lambda v: (_flat(v) - mean) / std


def known_per_class(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """A boolean mask of ``per_class`` rows of each class drawn at random: the labels the attacker knows."""
    rng = np.random.default_rng(seed)
    known = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        known[rng.choice(rows, min(per_class, len(rows) - 1), replace=False)] = True
    return known


def label_attack(
    vectors: np.ndarray, labels: np.ndarray, known: np.ndarray, new: tuple[np.ndarray, np.ndarray] | None = None
) -> float:
    """Accuracy (%) on the rows not ``known`` of a logistic regression fitted on the ``known`` rows' standardized
    ``vectors`` (rows x anything) and labels. ``new`` = (vectors, labels) of other rows: the accuracy on those
    instead (rows that did not exist when the attacker fitted, standardized with the first rows' statistics)."""
    from sklearn.linear_model import LogisticRegression

    if known.all() or not known.any():
        raise ApfedError("the label attack needs known and unknown rows")
    scale = _standardizer(vectors)
    x = scale(vectors)
    x_new, y_new = (scale(new[0]), new[1]) if new is not None else (x[~known], labels[~known])
    if len(np.unique(labels[known])) < 2:  # one class known: all the attacker can say is that class
        return majority_share(labels, known, y_new)
    model = LogisticRegression(max_iter=2000).fit(x[known], labels[known])
    return float((model.predict(x_new) == y_new).mean() * 100)


def majority_share(labels: np.ndarray, known: np.ndarray, others: np.ndarray | None = None) -> float:
    """Accuracy (%) of always guessing the class most frequent among the known rows, on the others (or on the
    labels ``others``): chance."""
    values, counts = np.unique(labels[known], return_counts=True)
    others = labels[~known] if others is None else others
    return float((others == values[np.argmax(counts)]).mean() * 100)


def feature_attack(
    vectors: np.ndarray, targets: np.ndarray, known: np.ndarray, new: tuple[np.ndarray, np.ndarray] | None = None
) -> float:
    """R² on the rows not ``known`` of a ridge regression (its penalty chosen by cross-validation on the known
    rows) from standardized ``vectors`` to standardized ``targets`` (rows x features; NaN counts as the mean),
    pooled over the features: 1 - residual sum of squares / total, 0 for predicting each feature's mean.
    ``new`` = (vectors, targets) of other rows: the R² on those instead."""
    from sklearn.linear_model import RidgeCV

    scale_x, scale_y = _standardizer(vectors), _standardizer(targets)
    x, y = scale_x(vectors), scale_y(targets)
    x_new, y_new = (scale_x(new[0]), scale_y(new[1])) if new is not None else (x[~known], y[~known])
    varies = y[known].std(0) > 0  # a feature constant on the known rows tells nothing
    if not varies.any():
        return 0.0
    y, y_new = y[:, varies], y_new[:, varies]
    model = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(x[known], y[known])
    residual = y_new - model.predict(x_new).reshape(-1, y.shape[1])  # one target: sklearn gives 1-D
    total = y_new - y[known].mean(0)
    return float(1 - (residual**2).sum() / max((total**2).sum(), 1e-12))


def known_share(n: int, share: float, seed: int) -> np.ndarray:
    """A boolean mask of ``share`` of ``n`` rows drawn at random (at least 2, at most n - 2): the rows whose
    features the attacker knows."""
    rng = np.random.default_rng(seed)
    known = np.zeros(n, dtype=bool)
    known[rng.choice(n, min(max(2, round(share * n)), n - 2), replace=False)] = True
    return known
