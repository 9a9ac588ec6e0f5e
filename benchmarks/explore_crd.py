"""Exploration (issue 2, point 2): contrastive representation distillation (CRD, Tian et al., 2020) over the whole
training set. Feature matching through a linear map gained +0.68 on the top strip and nothing on the bottom one
(`2026-12-02-feature-kd-h200.md`); CRD's contrastive form is reported to transfer more than a regression of features.
mnist5k has only 4,000 training rows, so every row's teacher feature is a negative for every other (no memory bank).

Teacher: one TVFL model trained through the real clients (explore_function_matching.train_teacher, 60 epochs,
shift 2), as in explore_feature_kd. Students: fresh active-only networks, 60 epochs, the default recipe, no
augmentation, trained on the labels plus:
- crd-fused-bB: B x InfoNCE (temperature 0.1) between a projection of the student's head activations (after the
  first layer and ReLU) and projections of the teacher's fused-head activations of all 4,000 training rows;
- crd-passive-bB: the same against the teacher's passive encoder output (the other strip's embedding): the student
  learns which strip goes with its own, APFed-C's task, against a trained passive and every row as a negative;
- +kdT4: soft-label distillation at temperature 4 too; hint-cos-b5+kdT4 is explore_feature_kd's, for comparison.

Usage: python benchmarks/explore_crd.py OUT STRIP SEED [DEVICE]; lines are appended to OUT/STRIP-SEED.jsonl.
Environment: EPOCHS=N (default 60) for the teacher and every student; ONLY=name,name runs only those students.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from explore_feature_kd import CosineHint, teacher_hidden
from explore_function_matching import jsonl_emitter, script_args, student, train_teacher

from apfed.config import make_config


@torch.no_grad()
def teacher_passive(teacher, idx) -> torch.Tensor:
    passive = teacher[1]
    passive.modules.eval()
    return passive.modules["encoder"](passive.X[idx]).flatten(1)


class CRDHint(torch.nn.Module):
    """B x InfoNCE of the student's projected activations against the projected teacher features of every training
    row; the positive is the row itself."""

    def __init__(self, teacher, features, train_idx: torch.Tensor, width: int, beta: float, tau: float = 0.1):
        super().__init__()
        self.beta, self.tau = beta, tau
        self.bank = features(teacher, train_idx)  # (n_train, d_t), fixed
        n = int(train_idx.max()) + 1
        self.register_buffer("pos", torch.full((n,), -1, dtype=torch.long, device=train_idx.device))
        self.pos[train_idx] = torch.arange(len(train_idx), device=train_idx.device)
        self.student_proj = torch.nn.Linear(width, 128)
        self.teacher_proj = torch.nn.Linear(self.bank.shape[1], 128)

    def forward(self, hidden, idx, aug):
        s = F.normalize(self.student_proj(hidden), dim=1)
        t = F.normalize(self.teacher_proj(self.bank), dim=1)
        return self.beta * F.cross_entropy(s @ t.T / self.tau, self.pos[idx])


def main() -> None:
    out, strip, seed, device, ds, active = script_args()
    epochs = int(os.environ.get("EPOCHS", 60))  # a smoke test's shorter runs
    base = make_config("default", method="tvfl", seed=seed, device=device, shift=2, epochs=epochs)
    emit = jsonl_emitter(out, strip, seed)
    t0 = time.time()
    teacher = train_teacher(ds, active, base)
    emit(student="(teacher)", accuracy=teacher[0].history[-1]["accuracy"], seconds=time.time() - t0)
    client, cfg = teacher[0], replace(base, method="local", shift=0)
    width, tr = cfg.head_hidden, client.train_idx

    def fused(t, idx):
        return teacher_hidden(t, idx, None)

    runs = [
        ("local", None, dict(w=0)),
        ("kdT4", None, dict(T=4, w=1)),
        ("hint-cos-b5+kdT4", lambda: CosineHint(teacher, width, 5.0), dict(T=4, w=1)),
        ("crd-fused-b1", lambda: CRDHint(teacher, fused, tr, width, 1.0), dict(w=0)),
        ("crd-fused-b1+kdT4", lambda: CRDHint(teacher, fused, tr, width, 1.0), dict(T=4, w=1)),
        ("crd-fused-b0.3+kdT4", lambda: CRDHint(teacher, fused, tr, width, 0.3), dict(T=4, w=1)),
        ("crd-passive-b1", lambda: CRDHint(teacher, teacher_passive, tr, width, 1.0), dict(w=0)),
        ("crd-passive-b1+kdT4", lambda: CRDHint(teacher, teacher_passive, tr, width, 1.0), dict(T=4, w=1)),
    ]
    only = [o for o in os.environ.get("ONLY", "").split(",") if o]
    for name, hint, kw in runs:
        if only and name not in only:
            continue
        t0 = time.time()
        acc = student(client, [teacher], cfg, hint=hint() if hint else None, epochs=epochs, **kw)
        emit(student=name, accuracy=acc, seconds=time.time() - t0)


if __name__ == "__main__":
    main()
