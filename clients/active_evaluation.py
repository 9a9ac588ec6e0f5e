"""The active party's evaluation: test predictions of every model a method yields, the validation figures that pick
the epoch kept (and stop early), temperature calibration, and the final metrics. A part of ``ActiveClient``."""

from __future__ import annotations

import numpy as np
import torch

from apfed.conformal import (
    class_scores,
    coverage_report,
    interval_hits,
    intervals,
    prediction_sets,
    quantile,
    residual_scores,
    set_hits,
)
from apfed.metrics import classification_metrics, regression_metrics, roc_auc
from clients.tensors import as_tensor, from_wire
from protocols.messages import EVALUATE
from protocols.validation import ArraySpec

T_MIN, T_MAX = 0.05, 20.0  # the temperatures calibration may choose (ActiveEvaluation._calibrate)


class ActiveEvaluation:
    """``ActiveClient``'s evaluation and model selection; it uses the client's learner, rows and exchanges."""

    def _calibrate(self) -> None:
        """Temperature scaling (Guo et al., ICML 2017): the T that makes the standalone model's probabilities on the
        validation rows most likely (the lowest log-loss there), folded into its last layer as logits / T, so
        predicting, exporting and the model file need nothing new; the predicted classes stay. The log-loss is
        convex in 1/T, so a golden-section search over 1/T finds it; T stays within [0.05, 20], since validation
        rows that the model gets all right would otherwise drive T to 0 (certainty)."""
        logits = self.learner.standalone_logits(self.val_idx).float()
        y = torch.from_numpy(self.y_val).long().to(logits.device)

        def loss(beta: float) -> float:
            return float(torch.nn.functional.cross_entropy(logits * beta, y))

        lo, hi = 1 / T_MAX, 1 / T_MIN
        g = (5**0.5 - 1) / 2
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        fa, fb = loss(a), loss(b)
        for _ in range(60):  # the bracket shrinks by 0.618 each step: far below float precision after 60
            if fa < fb:
                hi, b, fb = b, a, fa
                a = hi - g * (hi - lo)
                fa = loss(a)
            else:
                lo, a, fa = a, b, fb
                b = lo + g * (hi - lo)
                fb = loss(b)
        t = 2 / (lo + hi)
        before, after = loss(1.0), loss(1 / t)
        self.learner.scale_standalone_logits(1 / t)
        self.calibration = {"temperature": t, "val_log_loss_before": before, "val_log_loss_after": after}
        at_bound = t < T_MIN * 1.001 or t > T_MAX * 0.999
        bound = " (at its bound: the validation rows are too easy to calibrate on)" if at_bound else ""
        self.log(
            f"calibrated on the {self.n_val} validation rows: temperature {t:.3f}{bound}, their log-loss {before:.4f}"
            f" -> {after:.4f} (the predicted classes stay)"
        )

    def _conformalize(self) -> None:
        """Split conformal prediction on the validation rows kept apart for it (``apfed.conformal``): the quantile
        ``q`` of their scores that makes the standalone model's intervals (a regression) or sets of classes cover at
        least ``conformal`` of new rows. After calibration, so a set reads the probabilities the model file gives."""
        coverage, n = self.cfg.conformal, len(self.y_conf)
        outputs = self.learner.standalone_logits(self.conf_idx).float()
        if self.regression:
            scores = residual_scores(self.output_units(outputs), self.y_conf, self.logged)
        else:
            scores = class_scores(torch.softmax(outputs, 1).cpu().numpy(), self.y_conf)
        q = quantile(scores, coverage)
        self.conformal = {"coverage": coverage, "q": q, "rows": n}
        if self.regression:
            what = f"intervals of the prediction ± {q:.4g}" + (" in log(1 + y)" if self.logged else "")
        else:
            what = f"sets of the classes of probability at least {max(0.0, 1 - q):.4f} (and the predicted one)"
        self.log(f"conformal on the {n} validation rows kept apart: {coverage * 100:g} % {what}")

    def conformal_metrics(self) -> dict:
        """How the conformal intervals or sets did on the test rows: the share that held the truth and their mean
        width or size (``apfed.conformal.coverage_report``); nothing without them or without test rows."""
        if self.conformal is None or not self.tested:
            return {}
        outputs, q = self.learner.standalone_logits(self.test_idx).float(), self.conformal["q"]
        if self.regression:
            hits = interval_hits(intervals(self.output_units(outputs), q, self.logged), self.y_test)
        else:
            hits = set_hits(prediction_sets(torch.softmax(outputs, 1).cpu().numpy(), q), self.y_test)
        c = self.conformal
        return {
            **coverage_report(*hits, self.regression),
            "conformal_asked": c["coverage"],
            "conformal_q": q,
            "conformal_rows": c["rows"],
        }

    def passive_embeddings(self, idx: torch.Tensor) -> list[torch.Tensor]:
        replies = self._exchange(
            EVALUATE,
            {n: ({"idx": idx.long()}, {}) for n in self.names},
            lambda i: {"emb": ArraySpec((len(idx), *self.infos[i].embedding_shape), (self.cfg.payload,))},
        )
        return [from_wire(as_tensor(replies[n].arrays["emb"], self.cfg.device)) for n in self.names]

    def _fills(self, kind: str, n: int) -> list[torch.Tensor]:
        out = []
        g = torch.Generator().manual_seed(self.cfg.seed + 7)
        for i, p in enumerate(self.infos):
            s, ss, cnt = self.emb_stats[i]
            mean = (s / cnt).float()
            std = (ss / cnt - (s / cnt) ** 2).clamp_min(0).sqrt().float()
            shape = (n, *p.embedding_shape)
            if kind == "zero":
                out.append(torch.zeros(shape, device=mean.device))
            elif kind == "mean":
                out.append(mean.expand(n, -1).reshape(shape))
            else:
                noise = torch.randn((n, mean.numel()), generator=g).to(mean.device)
                out.append((mean + std * noise).reshape(shape))
        return out

    @property
    def tested(self) -> bool:
        """The run holds test rows (a split with a test fraction of 0 trains on every labelled row instead)."""
        return len(self.test_idx) > 0

    def predicted(self, outputs: torch.Tensor) -> np.ndarray:
        """What a model predicts from its outputs: the class of the largest logit, or a regression's value in the
        target's units."""
        if self.regression:
            values = self.output_units(outputs)
            return np.expm1(values) if self.logged else values
        return outputs.argmax(1).cpu().numpy()

    def output_units(self, outputs: torch.Tensor) -> np.ndarray:
        """A regression's outputs with the target's standardization undone (what the model file's network gives):
        the target's units, or log(1 + y) with ``target_transform=log``."""
        return (outputs[:, 0].double() * self.target["std"] + self.target["mean"]).cpu().numpy()

    @property
    def logged(self) -> bool:
        """A regression trained on log(1 + y)."""
        return self.regression and self.target.get("transform") == "log"

    def scored(self, pred: np.ndarray, y: np.ndarray) -> float:
        """The task's headline figure of predictions ``pred`` against ``y``: accuracy in %, or R²."""
        if self.regression:
            return regression_metrics(y, pred)["r2"]
        return float((pred == y).mean() * 100)

    @property
    def headline(self) -> str:
        """The key of the task's headline figure in an epoch's row and the final metrics: accuracy, or r2."""
        return "r2" if self.regression else "accuracy"

    def predictions(self) -> dict[str, np.ndarray]:
        """Test-set predictions (classes, or a regression's values) of each model this method yields (standalone,
        fused, fills); none without test rows."""
        L, idx, out = self.learner, self.test_idx, {}
        if not self.tested:
            return out
        if L.standalone:
            out["standalone"] = self.predicted(L.standalone_logits(idx))
        if L.fused:
            embs = self.passive_embeddings(self.test_rows) if self.names else []
            out["fused"] = self.predicted(L.fused_logits(idx, embs))
            if self.names and self.cfg.method == "tvfl":
                for kind in ("zero", "mean", "rand"):
                    out[f"fill_{kind}"] = self.predicted(L.fused_logits(idx, self._fills(kind, len(idx))))
        return out

    @property
    def n_val(self) -> int:
        """How many validation rows the run holds out (matched ones and those that some passive lacks)."""
        return len(self.y_val)

    def evaluate(self) -> dict:
        """Test accuracy (in %) of every model the method yields (``acc_standalone``, ...); ``accuracy`` is the
        method's headline (absent without test rows). With validation rows, also the headline model's accuracy,
        loss and ROC-AUC on them (``val_accuracy``, ...). A regression: R² instead of accuracy (``r2_standalone``,
        ``r2``, ``val_r2``), and the validation loss is the mean squared error of the standardized target."""
        preds = self.predictions()
        acc = {k: self.scored(v, self.y_test) for k, v in preds.items()}
        prefix = "r2" if self.regression else "acc"
        row = {f"{prefix}_{k}": v for k, v in acc.items()}
        if acc:
            row[self.headline] = acc["standalone"] if "standalone" in acc else acc["fused"]
        if self.n_val and self.regression:
            outputs = self._headline_logits(self.val_idx, self.val_rows).float()
            row["val_r2"] = self.scored(self.predicted(outputs), self.y_val)
            y = torch.from_numpy(self.y_val).to(outputs.device)
            y = y.log1p() if self.logged else y
            standardized = (y - self.target["mean"]) / self.target["std"]
            row["val_loss"] = float(((outputs[:, 0] - standardized) ** 2).mean())
        elif self.n_val:
            logits = self._headline_logits(self.val_idx, self.val_rows).float()
            y = torch.from_numpy(self.y_val).long().to(logits.device)
            row["val_accuracy"] = float((logits.argmax(1) == y).sum()) * 100 / len(y)
            row["val_loss"] = float(torch.nn.functional.cross_entropy(logits, y))
            auc = roc_auc(self.y_val, torch.softmax(logits, 1).cpu().numpy(), self.positive)
            if auc is not None:
                row["val_roc_auc"] = auc
        return row

    def _headline_logits(self, idx: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The logits of the method's headline model (standalone, or fused where it has none) for the aligned rows
        ``idx`` (``rows``: the same positions on the host, for the passives)."""
        L = self.learner
        if L.standalone:
            return L.standalone_logits(idx)
        return L.fused_logits(idx, self.passive_embeddings(rows) if self.names else [])

    def _keep_best(self, row: dict) -> bool:
        """After an epoch with validation rows: remember it (with a copy of the standalone model's weights) if its
        ``validation_metric`` is the best so far (the first such epoch); True when ``patience`` epochs have passed
        without a better one."""
        key = f"val_{self.validation_metric}"
        best = None if self.best is None else self.history[self.best["epoch"] - 1][key]
        if best is None or (row[key] < best if key == "val_loss" else row[key] > best):
            weights = self.learner.standalone_weights() if self.learner.standalone else {}
            self.best = {"epoch": row["epoch"], "state": weights}
        return self._patience_spent()

    def _best_figure(self) -> str:
        """The best epoch's validation figure, as the logs say it."""
        metric = self.validation_metric
        value = self.history[self.best["epoch"] - 1][f"val_{metric}"]
        return f"validation {metric} {value:.2f} %" if metric == "accuracy" else f"validation {metric} {value:.4f}"

    @property
    def validation_metric(self) -> str:
        """What picks the epoch: ``cfg.validation_metric``, where ``accuracy`` stands for R² in a regression."""
        metric = self.cfg.validation_metric
        return "r2" if self.regression and metric == "accuracy" else metric

    def _patience_spent(self) -> bool:
        """``patience`` epochs have passed since the best validation figure."""
        done = self.history[-1]["epoch"] if self.history else 0
        return self.cfg.patience > 0 and self.best is not None and done - self.best["epoch"] >= self.cfg.patience

    def _restore_best(self) -> None:
        """At the end of a run with validation rows: the standalone model goes back to its best epoch's weights."""
        if self.best is not None and self.best["state"]:
            self.learner.restore_standalone(self.best["state"])
            self.log(
                f"the standalone model is epoch {self.best['epoch']}'s, the best on the {self.n_val} validation rows"
                f" ({self._best_figure()})"
            )

    def final_metrics(self) -> dict:
        """The final model's test metrics (the standalone model's, or the fused one's where the method has no
        standalone model), ROC-AUC and average precision from its probabilities included; with test rows that
        some passive lacks, also the standalone model's accuracy on them (``unmatched_accuracy``,
        ``unmatched_test_rows``). Without test rows, only what validation picked (or nothing)."""
        out = {}
        if self.tested and self.regression:
            out = regression_metrics(self.y_test, self.predicted(self._headline_logits(self.test_idx, self.test_rows)))
        elif self.tested:
            logits = self._headline_logits(self.test_idx, self.test_rows)
            proba = torch.softmax(logits.float(), 1).cpu().numpy()
            out = classification_metrics(self.y_test, logits.argmax(1).cpu().numpy(), proba, self.positive)
        if self.best is not None and self.best["state"]:  # the model restored to its best epoch
            row = self.history[self.best["epoch"] - 1]
            out["best_epoch"] = self.best["epoch"]
            out.update({k: v for k, v in row.items() if k.startswith("val_")})
        if self.calibration is not None:
            out["calibration_temperature"] = self.calibration["temperature"]
            out["val_log_loss_calibrated"] = self.calibration["val_log_loss_after"]
        out.update(self.conformal_metrics())
        if len(self.own_test) == 0:
            return out
        L, idx, guesses = self.learner, self.own_test_idx, {}
        key = f"unmatched_{self.headline}"
        if L.standalone:
            guesses[key] = self.predicted(L.standalone_logits(idx))
        elif self.cfg.method == "tvfl" and self.names:  # the split model, for customers no passive knows
            for kind in ("zero", "mean", "rand"):
                guesses[f"{key}_fill_{kind}"] = self.predicted(L.fused_logits(idx, self._fills(kind, len(idx))))
        for k, g in guesses.items():
            out[k] = self.scored(g, self.y_own_test)
        out["unmatched_test_rows"] = len(self.own_test)
        out["shared_test_rows"] = len(self.test_idx)  # the headline figure's rows, which every passive holds
        return out
