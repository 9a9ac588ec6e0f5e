"""Classification metrics: accuracy plus macro and weighted precision, recall and F1 (in %)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_fscore_support


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    out = {"accuracy": float((y_true == y_pred).mean() * 100)}
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
        out.update({f"{avg}_precision": p * 100, f"{avg}_recall": r * 100, f"{avg}_f1": f * 100})
    return {k: float(v) for k, v in out.items()}
