"""Exploration (issue 2, point 2): feature distillation. On a training image the full-view teacher's soft label is
nearly the one-hot label, so it adds little; its hidden activations are not one-hot. Does matching them (or their
pairwise similarities) teach the active-only student more than the labels do?

Teacher: one TVFL model trained through the real clients (explore_function_matching.train_teacher, 60 epochs,
shift 2). The teacher's features: its fused head's activations after the first layer and ReLU, on the same
(augmented) rows as the student's. Students: fresh active-only networks, 60 epochs, the default recipe.
- hint-cos-bB: B x (1 - cosine) between a linear map of the student's head activations and the teacher's;
- rkd-bB: B x mean squared difference of the two batch Gram matrices of L2-normalised activations;
- +kdT4: with soft-label distillation at temperature 4 too; -s2: both see the same shift of up to 2 px.

Usage: python benchmarks/explore_feature_kd.py OUT STRIP SEED [DEVICE]; lines are appended to OUT/STRIP-SEED.jsonl.
Environment: LONG_EPOCHS=N runs instead local, kdT4, hint-cos-b5, hint-cos-b5+kdT4 and hint-cos-b10+kdT4 with KD
weight 2 for N epochs each (suffix -eN), with no augmentation.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from explore_function_matching import (  # same directory: run as a script
    jsonl_emitter,
    script_args,
    student,
    train_teacher,
)

from apfed.augment import apply_augmentation
from apfed.config import make_config


@torch.no_grad()
def teacher_hidden(teacher, idx, aug) -> torch.Tensor:
    client, passive = teacher
    L = client.learner
    L.modules.eval()
    passive.modules.eval()
    h = L.modules["encoder"](apply_augmentation(L.X[idx], aug)).flatten(1)
    e = passive.modules["encoder"](apply_augmentation(passive.X[idx], aug)).flatten(1)
    return L.modules["fused_head"][:3](torch.cat([h, e], 1))


class CosineHint(torch.nn.Module):
    def __init__(self, teacher, width: int, beta: float):
        super().__init__()
        self.teacher, self.beta = teacher, beta
        self.adapter = torch.nn.Linear(width, width)

    def forward(self, hidden, idx, aug):
        t = teacher_hidden(self.teacher, idx, aug)
        return self.beta * (1 - F.cosine_similarity(self.adapter(hidden), t, dim=1)).mean()


class RelationHint(torch.nn.Module):
    def __init__(self, teacher, beta: float):
        super().__init__()
        self.teacher, self.beta = teacher, beta

    def forward(self, hidden, idx, aug):
        t = F.normalize(teacher_hidden(self.teacher, idx, aug), dim=1)
        s = F.normalize(hidden, dim=1)
        return self.beta * F.mse_loss(s @ s.T, t @ t.T)


def main() -> None:
    out, strip, seed, device, ds, active = script_args()
    base = make_config("default", method="tvfl", seed=seed, device=device, shift=2)
    emit = jsonl_emitter(out, strip, seed)
    t0 = time.time()
    teacher = train_teacher(ds, active, base)
    emit(student="(teacher)", accuracy=teacher[0].history[-1]["accuracy"], seconds=time.time() - t0)
    client, cfg = teacher[0], replace(base, method="local", shift=0)
    width = cfg.head_hidden
    runs = [
        ("local", None, dict(w=0)),
        ("kdT4", None, dict(T=4, w=1)),
        ("hint-cos-b1", lambda: CosineHint(teacher, width, 1.0), dict(w=0)),
        ("hint-cos-b5", lambda: CosineHint(teacher, width, 5.0), dict(w=0)),
        ("rkd-b50", lambda: RelationHint(teacher, 50.0), dict(w=0)),
        ("hint-cos-b5+kdT4", lambda: CosineHint(teacher, width, 5.0), dict(T=4, w=1)),
        ("local-s2", None, dict(w=0, shift=2)),
        ("hint-cos-b5-s2", lambda: CosineHint(teacher, width, 5.0), dict(w=0, shift=2)),
        ("rkd-b50-s2", lambda: RelationHint(teacher, 50.0), dict(w=0, shift=2)),
        ("hint-cos-b5+kdT4-s2", lambda: CosineHint(teacher, width, 5.0), dict(T=4, w=1, shift=2)),
    ]
    long = int(os.environ.get("LONG_EPOCHS", 0))  # patient students, no augmentation: local, kdT4, hint, both
    if long:
        runs = [
            (f"{name}-e{long}", hint, {**kw, "epochs": long})
            for name, hint, kw in runs
            if name in ("local", "kdT4", "hint-cos-b5", "hint-cos-b5+kdT4")
        ]
        runs.append(
            (f"hint-cos-b10+kdT4-w2-e{long}", lambda: CosineHint(teacher, width, 10.0), dict(T=4, w=2, epochs=long))
        )
    for name, hint, kw in runs:
        t0 = time.time()
        acc = student(client, [teacher], cfg, hint=hint() if hint else None, **kw)
        emit(student=name, accuracy=acc, seconds=time.time() - t0)


if __name__ == "__main__":
    main()
