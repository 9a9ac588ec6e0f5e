"""Classification metrics: accuracy plus macro and weighted precision, recall and F1 (in %), and from predicted
probabilities ROC-AUC and average precision (0–1); running means of per-minibatch training metrics."""

from __future__ import annotations

import numpy as np
import torch

FOLD_EVERY = 256  # per-minibatch values held before they are folded into a sum


def classification_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    positive: int = 1,
    labels: list[int] | None = None,
) -> dict[str, float]:
    """Accuracy, precision, recall and F1 (macro and weighted) in %; with ``proba`` (n, classes), also
    ``roc_auc`` and ``average_precision`` (see ``ranking_metrics``). ``labels``: the classes the averages are
    over (default: those in ``y_true`` or ``y_pred``)."""
    from sklearn.metrics import precision_recall_fscore_support  # here: importing sklearn takes about a second

    out = {"accuracy": float((y_true == y_pred).mean() * 100)}
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg, zero_division=0)
        out.update({f"{avg}_precision": p * 100, f"{avg}_recall": r * 100, f"{avg}_f1": f * 100})
    if proba is not None:
        out.update(ranking_metrics(y_true, proba, positive))
        out.update(calibration_metrics(y_true, proba))
    return {k: float(v) for k, v in out.items()}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """A regression's figures: ``r2`` (the coefficient of determination: 1 is perfect, 0 is as good as predicting
    the rows' mean, below 0 worse), ``rmse`` and ``mae`` (root mean squared and mean absolute error, in the
    target's units)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    err = y_pred - y_true
    sse, sst = float((err**2).sum()), float(((y_true - y_true.mean()) ** 2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else 0.0)
    return {"r2": r2, "rmse": float(np.sqrt((err**2).mean())), "mae": float(np.abs(err).mean())}


def calibration_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """How well probabilities ``proba`` (n, classes) are calibrated against class indices ``y_true``: ``log_loss``
    (the mean negative log-probability of the true class) and ``brier`` (the squared distance of the
    probabilities to the one-hot label, summed over the classes: 0 is perfect, 2 the worst)."""
    rows = np.arange(len(y_true))
    p_true = np.clip(proba[rows, y_true], 1e-12, 1.0)
    brier = ((proba - np.eye(proba.shape[1])[y_true]) ** 2).sum(1).mean()
    return {"log_loss": float(-np.log(p_true).mean()), "brier": float(brier)}


def ranking_metrics(y_true: np.ndarray, proba: np.ndarray, positive: int = 1) -> dict[str, float]:
    """Threshold-free metrics of predicted probabilities, in 0–1: how well the model ranks, whatever the cut-off.

    - ``roc_auc``: one class against the rest, averaged over the classes (macro); with two classes it is the
      usual ROC-AUC, which both classes share.
    - ``average_precision`` (area under the precision-recall curve): with two classes, of class ``positive``
      (the active party passes the rarer class in training: fraud, churn, a diagnosis); with more, the macro
      mean over the classes.

    A class with no test row, or the only class present, has no curve: the means are over the others, and with
    none left the metrics are absent."""
    from sklearn.metrics import average_precision_score

    classes = _ranked_classes(y_true, proba, positive)
    if not classes:
        return {}
    aps = [average_precision_score(y_true == c, proba[:, c]) for c in classes]
    return {"roc_auc": _roc_auc(y_true, proba, classes), "average_precision": float(np.mean(aps))}


def roc_auc(y_true: np.ndarray, proba: np.ndarray, positive: int = 1) -> float | None:
    """``ranking_metrics``' ROC-AUC alone, in well under a millisecond (for every epoch's validation rows)."""
    classes = _ranked_classes(y_true, proba, positive)
    return _roc_auc(y_true, proba, classes) if classes else None


def _ranked_classes(y_true: np.ndarray, proba: np.ndarray, positive: int) -> list[int]:
    """The classes that have a curve: some rows of the class and some of the others."""
    classes = [positive] if proba.shape[1] == 2 else range(proba.shape[1])
    return [c for c in classes if 0 < int((y_true == c).sum()) < len(y_true)]


def _roc_auc(y_true: np.ndarray, proba: np.ndarray, classes: list[int]) -> float:
    """Mean over ``classes`` of one class's ROC-AUC against the rest: the Mann-Whitney statistic from the ranks of
    its scores (ties share their mean rank, as sklearn's ``roc_auc_score`` counts them), one sort per class."""
    from scipy.stats import rankdata

    ranks = rankdata(proba[:, classes], axis=0)
    aucs = []
    for j, c in enumerate(classes):
        pos = y_true == c
        n_pos = int(pos.sum())
        n_neg = len(y_true) - n_pos
        aucs.append((ranks[pos, j].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(aucs))


def standalone_rows(history: list[dict], teacher_epochs: int) -> list[dict]:
    """The epochs whose figures are the standalone model's: with a fresh student (``kd_student=fresh``) those after
    its teacher's ``teacher_epochs``, whose figures are the joint student's, thrown away; else every epoch."""
    return history[teacher_epochs:] if 0 < teacher_epochs < len(history) else history


def headline_accuracy(history: list[dict], final: dict, eval_last: int) -> float | None:
    """The accuracy a run reports: the mean test accuracy over its last ``eval_last`` epochs (the reference's
    figure); with validation rows that picked the standalone model's epoch, that model's test accuracy. None for a
    run with no test rows (test fraction 0). A regression's: R² instead of accuracy."""
    key = "r2" if "r2" in final else "accuracy"
    if key not in final:
        return None
    if "best_epoch" in final:
        return float(final[key])
    return float(np.mean([h[key] for h in history[-eval_last:]]))


def headline_validation(history: list[dict], final: dict, eval_last: int, metric: str = "accuracy") -> float | None:
    """The validation figure (``val_<metric>``) of the model behind a run's headline accuracy: the kept epoch's
    where validation picked the standalone model's epoch, else the mean over the last ``eval_last`` epochs (as the
    headline accuracy averages them). None for a run without validation rows."""
    key = f"val_{metric}"
    if "best_epoch" in final:
        return final.get(key)
    values = [h[key] for h in history[-eval_last:] if h.get(key) is not None]
    return float(np.mean(values)) if values else None


class RunningMeans:
    """Per-key means of per-minibatch values (0-dim tensors or floats) over an epoch, in O(1) memory: values
    are buffered and folded into float64 sums every ``FOLD_EVERY`` minibatches (one kernel per fold, no host
    sync per minibatch on a GPU). Keys keep their first-seen order; a key missing from a minibatch (a passive
    that skipped a round) is averaged over the minibatches that have it."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.buffered: dict[str, list[torch.Tensor]] = {}

    def add(self, metrics: dict) -> None:
        for key, value in metrics.items():
            self.counts.setdefault(key, 0)  # first-seen order, whichever key folds first
            buf = self.buffered.setdefault(key, [])
            buf.append(torch.as_tensor(value).detach())
            if len(buf) >= FOLD_EVERY:
                self._fold(key)

    def _fold(self, key: str) -> None:
        buf = self.buffered.pop(key, [])
        if not buf:
            return
        total = torch.stack([b.to(buf[0].device) for b in buf]).double().sum()
        self.sums[key] = total if key not in self.sums else self.sums[key].to(total.device) + total
        self.counts[key] += len(buf)

    def _fold_all(self) -> None:
        for key in list(self.buffered):
            self._fold(key)

    def means(self) -> dict[str, float]:
        self._fold_all()
        return {key: float(self.sums[key]) / n for key, n in self.counts.items() if n}

    def state(self) -> dict:
        """Tensors only (a checkpoint loads with ``weights_only=True``)."""
        self._fold_all()
        return {"sums": dict(self.sums), "counts": {k: torch.tensor(c) for k, c in self.counts.items()}}

    @classmethod
    def from_state(cls, state: dict | list) -> RunningMeans:
        out = cls()
        if isinstance(state, list):  # checkpoints before running means: the per-minibatch dicts
            for m in state:
                out.add(m)
            return out
        out.sums = dict(state["sums"])
        out.counts = {k: int(c) for k, c in state["counts"].items()}
        return out


def test_provenance(final: dict) -> dict:
    """What a model file records of its final test metrics (``apfed info`` shows them)."""
    held = {"test_conformal_coverage": final["conformal_coverage"]} if "conformal_coverage" in final else {}
    if "r2" in final:
        return {"test_r2": final["r2"], "test_rmse": final["rmse"], "test_mae": final["mae"], **held}
    if "accuracy" not in final:  # trained on every labelled row: nothing was tested
        return {}
    auc = {"test_roc_auc": final["roc_auc"]} if "roc_auc" in final else {}
    return {"test_accuracy": final["accuracy"], **auc, **held}
