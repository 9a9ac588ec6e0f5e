"""apfed-kd with ``kd_student=fresh``: the run's epochs train the teacher (the fused head over every party's
embedding, as usual); then the active party asks the passives once for their embeddings of the training rows, keeps
the teacher's outputs on them, and trains a new standalone network, alone, for as many epochs on the labels and those
soft labels. That is the two-stage distillation of docs/research.md, which did better than the joint student there.
A part of ``ActiveClient``; the passives take no further part until the run's end."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

import torch

from apfed.augment import sample_augmentation
from apfed.learner import ActiveLearner
from apfed.metrics import RunningMeans

TEACHER_ROWS = 4096  # training rows per request of the passives' embeddings: bounded messages on any data size


class ActiveStudent:
    """``ActiveClient``'s second stage under ``kd_student=fresh``; it uses the client's learner, rows and exchanges."""

    def _teacher_outputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's outputs (logits, or a regression's output) for each of the learner's rows, and a 0/1 float
        per row: 1 for the matched training rows (those with no label too), labelled here with the passives'
        embeddings; 0 for the rest (validation, test, and rows that some passive lacks: the teacher cannot see them)."""
        L = self.learner
        outputs = torch.zeros((len(L.X), L.n_classes), device=self.cfg.device)
        taught = torch.zeros(len(L.X), device=self.cfg.device)
        for start in range(0, len(self.train_rows), TEACHER_ROWS):
            rows = self.train_rows[start : start + TEACHER_ROWS]
            idx = self.train_idx[start : start + TEACHER_ROWS]
            embs = self.passive_embeddings(rows) if self.names else []
            outputs[idx] = L.fused_logits(idx, embs).float()
            taught[idx] = 1.0
        return outputs, taught

    def _train_fresh_student(
        self, on_epoch: Callable[[dict], None] | None, on_batch: Callable[[], None] | None
    ) -> None:
        """Train the fresh student for ``cfg.epochs`` epochs (numbered on from the teacher's), evaluating it after
        each; with validation rows, its best epoch is the one kept, and ``patience`` may stop it early."""
        cfg, teacher = self.cfg, self.learner
        targets = self._teacher_outputs()
        self.learner = ActiveLearner(
            teacher.spec,
            replace(cfg, method="local", seed=cfg.seed + 99),  # its own initial weights, not the teacher's encoder's
            teacher.n_classes,
            teacher.X,
            teacher.y,
            [],
            class_weights=teacher.class_weights,
            own_rows=True,
            unlabelled=teacher.unlabelled,
            teacher=targets,
        )
        del teacher
        self.best = None  # the teacher's epochs picked nothing: validation picks among the student's
        self.log(f"teacher trained; a fresh standalone student now trains for {cfg.epochs} epochs on its soft labels")
        rows = torch.cat([self.train_idx.long(), self.own_idx.long()])
        gen = torch.Generator().manual_seed(cfg.seed + 11)
        aug_gen = torch.Generator().manual_seed(cfg.seed + 12)
        per_epoch = math.ceil(len(rows) / cfg.batch_size)
        for e in range(cfg.epochs):
            t0, metrics = time.perf_counter(), RunningMeans()
            order = rows[torch.randperm(len(rows), generator=gen).to(rows.device)]
            for b, idx in enumerate(order.split(cfg.batch_size)):
                aug = sample_augmentation(len(idx), cfg, aug_gen, cfg.device)
                metrics.add(self.learner.own_step(idx, (e + b / per_epoch) / cfg.epochs, aug))
                if on_batch:
                    on_batch()
            row = self._end_epoch(cfg.epochs + e + 1, t0, 0.0, metrics)
            stop = self.n_val > 0 and self._keep_best(row) and e + 1 < cfg.epochs
            if on_epoch:
                on_epoch(row)
            if stop:
                self._stop_early(None, row["epoch"])
                break
