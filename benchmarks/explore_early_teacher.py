"""Exploration (issue 2, point 2): soft labels from a less trained teacher. The diagnosis in docs/research.md is that a
TVFL teacher trained for 60 epochs labels its own training rows nearly one-hot, so its soft labels tell the student
little that the labels do not. Cho and Hariharan (2019, "On the efficacy of knowledge distillation") found that
teachers stopped early distil better for that reason. Here the teacher is the same TVFL model (through the real
clients, shift 2) trained on a shorter cosine schedule: 5, 15, 30 or 60 epochs. Each student is a fresh active-only
network, 60 epochs, the default recipe, no augmentation, trained on the labels plus the teacher's soft labels at
T = 4 (weight 1); `local` is the same student with labels only.

For each teacher the script also records how soft its labels are on the training rows: its training accuracy and
the mean probability it gives the true class at T = 1 and at T = 4.

Usage: python benchmarks/explore_early_teacher.py OUT STRIP SEED [DEVICE]; lines are appended to OUT/STRIP-SEED.jsonl.
Environment: SCALE=x multiplies every epoch count (a smoke test's shorter runs).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import torch
from explore_function_matching import jsonl_emitter, script_args, student, teacher_out, train_teacher

from apfed.config import make_config


@torch.no_grad()
def softness(teacher, client) -> dict:
    """The teacher's accuracy on the training rows and the mean probability of the true class at T = 1 and 4."""
    tr = client.train_idx
    logits = torch.cat([teacher_out([teacher], idx, None) for idx in tr.split(512)])
    y = client.learner.y[tr].long()
    p1 = logits.softmax(1).gather(1, y[:, None]).mean()
    p4 = (logits / 4).softmax(1).gather(1, y[:, None]).mean()
    return {
        "train_accuracy": float((logits.argmax(1) == y).float().mean() * 100),
        "p_true_T1": float(p1),
        "p_true_T4": float(p4),
    }


def main() -> None:
    out, strip, seed, device, ds, active = script_args()
    scale = float(os.environ.get("SCALE", 1))
    epochs = max(1, int(60 * scale))
    base = make_config("default", method="tvfl", seed=seed, device=device, shift=2, epochs=epochs)
    emit = jsonl_emitter(out, strip, seed)
    teachers = {}
    for te in (5, 15, 30, 60):
        t0 = time.time()
        n = max(1, int(te * scale))
        teachers[te] = train_teacher(ds, active, replace(base, epochs=n))
        client = teachers[te][0]
        emit(
            student=f"(teacher e{te})",
            accuracy=client.history[-1]["accuracy"],
            seconds=time.time() - t0,
            **softness(teachers[te], client),
        )
    client = teachers[60][0]
    cfg = replace(base, method="local", shift=0)
    t0 = time.time()
    emit(student="local", accuracy=student(client, [], cfg, w=0, epochs=epochs), seconds=time.time() - t0)
    for te, teacher in teachers.items():
        t0 = time.time()
        acc = student(client, [teacher], cfg, T=4, w=1, epochs=epochs)
        emit(student=f"kdT4-teacher-e{te}", accuracy=acc, seconds=time.time() - t0)


if __name__ == "__main__":
    main()
