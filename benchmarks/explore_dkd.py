"""Exploration (issue 2, point 2): decoupled knowledge distillation (DKD; Zhao et al., CVPR 2022). On a training
image the full-view teacher's soft label is nearly one-hot, and Hinton's loss weighs what it says about the other
classes by (1 - p_target), nearly 0 there. DKD splits the loss into the target-class term (TCKD, a binary KL on
p_target) and the non-target term (NCKD, the KL between the distributions over the other classes alone), and
weighs NCKD by beta on its own: the teacher's dark knowledge reaches the student at full weight.

Teacher: one TVFL model trained through the real clients (explore_function_matching.train_teacher, 60 epochs,
shift 2). Students: fresh active-only networks, 60 epochs, the default recipe, no augmentation unless named:
- local; kdT4 (Hinton, T = 4, weight 1);
- dkd-aA-bB-tT: alpha TCKD + beta NCKD at temperature T, its weight warmed up linearly over the first 20 epochs
  (the paper's schedule);
- +hint: with the cosine feature hint of explore_feature_kd.py (beta 5) too.

Usage: python benchmarks/explore_dkd.py OUT STRIP SEED [DEVICE]; lines are appended to OUT/STRIP-SEED.jsonl.
"""

from __future__ import annotations

import time
from dataclasses import replace

import explore_function_matching as fm  # same directory: run as a script
import torch
import torch.nn.functional as F
from explore_feature_kd import CosineHint

from apfed.config import make_config
from apfed.losses import distillation

WARMUP_EPOCHS = 20


def dkd(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, alpha: float, beta: float, t: float):
    """alpha * TCKD + beta * NCKD, each scaled by T^2 and averaged over the batch."""
    gt = F.one_hot(y, student.shape[1]).bool()
    ps, pt = F.softmax(student / t, 1), F.softmax(teacher.detach() / t, 1)
    bs = torch.stack([(ps * gt).sum(1), (ps * ~gt).sum(1)], 1).clamp_min(1e-12)
    bt = torch.stack([(pt * gt).sum(1), (pt * ~gt).sum(1)], 1)
    tckd = F.kl_div(bs.log(), bt, reduction="batchmean") * t * t
    nt = F.softmax(teacher.detach() / t - 1000.0 * gt, 1)
    ns = F.log_softmax(student / t - 1000.0 * gt, 1)
    nckd = F.kl_div(ns, nt, reduction="batchmean") * t * t
    return alpha * tckd + beta * nckd


class DKDLoss:
    """Stands in for ``explore_function_matching.distillation``: the student's minibatch rows come through the
    teacher's callable, which records them, so the loss knows their labels and the epoch (for the warm-up)."""

    def __init__(self, teacher, y: torch.Tensor, batches_per_epoch: int, alpha: float, beta: float):
        self.teacher, self.y, self.per_epoch = teacher, y, batches_per_epoch
        self.alpha, self.beta, self.calls, self.idx = alpha, beta, 0, None

    def soft(self, idx, aug):
        self.idx = idx
        return fm.teacher_out([self.teacher], idx, aug)

    def __call__(self, student, teacher, t):
        warm = min(1.0, self.calls / (WARMUP_EPOCHS * self.per_epoch))
        self.calls += 1
        return warm * dkd(student, teacher, self.y[self.idx].long(), self.alpha, self.beta, t)


def main() -> None:
    out, strip, seed, device, ds, active = fm.script_args()
    base = make_config("default", method="tvfl", seed=seed, device=device, shift=2)
    emit = fm.jsonl_emitter(out, strip, seed)
    t0 = time.time()
    teacher = fm.train_teacher(ds, active, base)
    emit(student="(teacher)", accuracy=teacher[0].history[-1]["accuracy"], seconds=time.time() - t0)
    client, cfg = teacher[0], replace(base, method="local", shift=0)
    per_epoch = -(-len(client.train_idx) // cfg.batch_size)
    width = cfg.head_hidden
    runs = [
        ("local", None, None, dict(w=0)),
        ("kdT4", None, None, dict(T=4, w=1)),
        ("dkd-a1-b8-t4", (1.0, 8.0), None, dict(T=4, w=1)),
        ("dkd-a1-b2-t4", (1.0, 2.0), None, dict(T=4, w=1)),
        ("dkd-a0-b8-t4", (0.0, 8.0), None, dict(T=4, w=1)),
        ("dkd-a1-b8-t1", (1.0, 8.0), None, dict(T=1, w=1)),
        ("dkd-a1-b8-t4+hint", (1.0, 8.0), lambda: CosineHint(teacher, width, 5.0), dict(T=4, w=1)),
    ]
    for name, ab, hint, kw in runs:
        t0 = time.time()
        if ab is None:
            fm.distillation, soft = distillation, [teacher]
        else:
            loss = DKDLoss(teacher, client.learner.y, per_epoch, *ab)
            fm.distillation, soft = loss, loss.soft
        acc = fm.student(client, soft, cfg, hint=hint() if hint else None, **kw)
        emit(student=name, accuracy=acc, seconds=time.time() - t0)


if __name__ == "__main__":
    main()
