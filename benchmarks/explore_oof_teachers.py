"""Exploration (issue 2, point 2): function matching from out-of-fold teachers on mnist5k, 2 views.

Why: on a training image a full-view teacher's soft label is nearly the one-hot label (it has fitted that very
image), so it tells the student little that the label does not. Here the training rows are cut into 5 stratified
folds and one TVFL teacher is trained (through the real clients, 60 epochs, shift 2) on the other 4 folds of each:
every training row then has a teacher that never saw it, whose soft label carries real uncertainty.

oof5-s2m1: a fresh active-only student, ``LONG_EPOCHS`` epochs (default 200), trained on the KL to the soft labels
(T = 1) of the teacher that did not see the row (for a mixed pair, the teacher that did not see the first image),
on the very same shifted and mixed input (shift 2, mixup alpha 1), no label loss: explore_function_matching's
fm3-s2m1 with out-of-fold teachers in place of three teachers that saw every row.

Usage: python benchmarks/explore_oof_teachers.py OUT STRIP SEED [DEVICE]; lines are appended to OUT/STRIP-SEED.jsonl.
Environment: LONG_EPOCHS, TEACHER_EPOCHS (default 60), FOLDS (default 5).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import numpy as np
import torch
from explore_function_matching import (  # same directory: run as a script
    jsonl_emitter,
    script_args,
    student,
    teacher_out,
    train_teacher,
)

from apfed.config import make_config


def stratified_folds(labels: np.ndarray, rows: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold number for each of ``rows``, every class spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(rows), dtype=np.int64)
    for c in np.unique(labels[rows]):
        at = rng.permutation(np.flatnonzero(labels[rows] == c))
        out[at] = np.arange(len(at)) % folds
    return out


def main() -> None:
    out, strip, seed, device, ds, active = script_args()
    folds = int(os.environ.get("FOLDS", 5))
    teacher_epochs = int(os.environ.get("TEACHER_EPOCHS", 60))
    long = int(os.environ.get("LONG_EPOCHS", 200))
    base = make_config("default", method="tvfl", seed=seed, device=device, shift=2)
    emit = jsonl_emitter(out, strip, seed)

    # the student's data: every training row (a one-epoch run only builds the parties)
    client = train_teacher(ds, active, replace(base, epochs=1))[0]
    assert np.array_equal(client.keep, np.arange(len(ds.ids))), "positions are dataset rows on mnist5k"
    fold_of_train = stratified_folds(ds.labels, ds.train_idx, folds, seed)
    fold = np.full(len(ds.ids), -1, dtype=np.int64)
    fold[ds.train_idx] = fold_of_train
    teachers = []
    for k in range(folds):
        t0 = time.time()
        sub = replace(ds, train_idx=ds.train_idx[fold_of_train != k])
        teachers.append(train_teacher(sub, active, replace(base, seed=seed * 10 + k, epochs=teacher_epochs)))
        t = teachers[-1][0]
        emit(
            student=f"(fold teacher {k})",
            accuracy=t.history[-1]["accuracy"],
            train_rows=len(t.train_idx),
            seconds=time.time() - t0,
        )
    fold_t = torch.as_tensor(fold, device=client.train_idx.device)

    def out_of_fold(idx: torch.Tensor, aug: dict | None) -> torch.Tensor:
        logits = torch.stack([teacher_out([t], idx, aug) for t in teachers])  # (folds, batch, classes)
        f = fold_t[idx]
        assert bool((f >= 0).all()), "a student minibatch holds a row outside the training folds"
        return logits[f, torch.arange(len(idx), device=idx.device)]

    cfg = replace(base, method="local", shift=0)
    t0 = time.time()
    acc = student(client, out_of_fold, cfg, T=1, ce=False, shift=2, mixup=1.0, epochs=long)
    emit(student=f"oof{folds}-s2m1-e{long}", accuracy=acc, seconds=time.time() - t0)


if __name__ == "__main__":
    main()
