"""Exploration (issue 2, point 2): a hallucinated passive. A TVFL teacher's fused head reads
``relu(W_A h_A + W_B e_B + b)``: all it needs from the passive is the 256-wide ``W_B e_B``. The standalone student
keeps the teacher's structure and predicts that term from its own strip: ``relu(W_A h + H(h) + b)``, with ``H`` a
small MLP trained to regress the teacher's ``W_B e_B`` on the same row (modality hallucination, Hoffman et al.,
CVPR 2016), next to the task loss. Every student is 60 epochs of the default recipe with no augmentation, as the
``local`` it is compared with (same seed, same script).

Students:
- local: a fresh encoder and head, cross-entropy;
- init-enc: the teacher's active encoder as the start, a fresh head, cross-entropy;
- hall-bB: the teacher's encoder and fused head as the start, a fresh ``H``; cross-entropy + B x relative MSE;
- hall-b1+kdT4: the same with soft-label distillation from the teacher at temperature 4;
- hall-fresh-b1+kdT4: every part fresh.

Usage: python benchmarks/explore_hallucination.py OUT STRIP SEED [DEVICE]; lines go to OUT/STRIP-SEED.jsonl.
Environment: EPOCHS (default 60), for the teacher and every student.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from explore_function_matching import jsonl_emitter, script_args, train_epochs, train_teacher  # same directory

from apfed.config import make_config
from apfed.losses import distillation
from apfed.models import encoder_output_shape, init_modules, make_encoder, make_head


class Student(torch.nn.Module):
    """encoder -> relu(first(h) + hall(h)) -> rest of the head; ``hall`` is None for a plain student."""

    def __init__(self, encoder, head, hall):
        super().__init__()
        self.encoder, self.hall = encoder, hall
        self.first, self.rest = head[1], head[2:]  # head: Flatten, Linear, ReLU, Dropout, Linear

    def forward(self, x):
        h = self.encoder(x).flatten(1)
        u = self.hall(h) if self.hall is not None else None
        pre = self.first(h) + (u if u is not None else 0)
        return self.rest(pre), u


def teacher_parts(teacher, d_a):
    """The teacher's active encoder, its fused head cut to the active's inputs (W_A, b), and a function giving the
    passive's term W_B e_B and the teacher's logits on rows ``idx``."""
    client, passive = teacher
    L = client.learner
    fused = L.modules["fused_head"]
    head = copy.deepcopy(fused)
    w = fused[1].weight.detach()
    head[1] = torch.nn.Linear(d_a, w.shape[0]).to(w.device)
    with torch.no_grad():
        head[1].weight.copy_(w[:, :d_a])
        head[1].bias.copy_(fused[1].bias)

    @torch.no_grad()
    def targets(idx):
        L.modules.eval()
        passive.modules.eval()
        h = L.modules["encoder"](L.X[idx]).flatten(1)
        e = passive.modules["encoder"](passive.X[idx]).flatten(1)
        return e @ w[:, d_a:].T, fused(torch.cat([h, e], 1))

    return copy.deepcopy(L.modules["encoder"]), head, targets


def train_student(client, cfg, net, targets, beta=0.0, kd=0.0, T=4.0, epochs=60):
    L = client.learner
    net = net.to(cfg.device)
    torch.manual_seed(cfg.seed + 1)
    accs = []

    def loss_of(idx):
        net.train()
        logits, u = net(L.X[idx])
        loss = F.cross_entropy(logits, L.y[idx].long())
        if beta or kd:
            t_u, t_logits = targets(idx)
            if beta:
                loss = loss + beta * ((u - t_u) ** 2).sum(1).mean() / (t_u**2).sum(1).mean()
            if kd:
                loss = loss + kd * distillation(logits, t_logits, T)
        return loss

    @torch.no_grad()
    def test(_epoch: int) -> None:
        net.eval()
        pred = net(L.X[client.test_idx])[0].argmax(1).cpu().numpy()
        accs.append(float((pred == client.y_test).mean() * 100))

    train_epochs(client, cfg, net.parameters(), epochs, loss_of, test)
    return sum(accs[-10:]) / len(accs[-10:])


def main() -> None:
    out, strip, seed, device, ds, active = script_args()
    epochs = int(os.environ.get("EPOCHS", 60))  # a quick check: EPOCHS=2
    base = make_config("default", method="tvfl", seed=seed, device=device, epochs=epochs)
    emit = jsonl_emitter(out, strip, seed)
    t0 = time.time()
    teacher = train_teacher(ds, active, base)
    client = teacher[0]
    emit(student="(teacher)", accuracy=client.history[-1]["accuracy"], seconds=time.time() - t0)
    cfg = replace(base, method="local")
    d_a = int(torch.tensor(encoder_output_shape(client.spec, cfg.embedding_dim)).prod())
    width = cfg.head_hidden

    def fresh(seed_offset=99):
        return init_modules(
            cfg.seed + seed_offset,
            lambda: (
                make_encoder(client.spec, cfg.embedding_dim, cfg.hidden_dim),
                make_head(d_a, width, 10, cfg.dropout),
                torch.nn.Sequential(torch.nn.Linear(d_a, width), torch.nn.ReLU(), torch.nn.Linear(width, width)),
            ),
        )

    targets = teacher_parts(teacher, d_a)[2]

    def from_teacher() -> Student:
        """A student started from the teacher's encoder and fused head (cut to the active's inputs), fresh ``H``."""
        enc, head, _ = teacher_parts(teacher, d_a)
        return Student(enc, head, fresh()[2].to(device))

    enc, head, _ = fresh()
    runs = [("local", Student(enc, head, None), {})]
    runs.append(("init-enc", Student(teacher_parts(teacher, d_a)[0], fresh()[1], None), {}))
    runs += [(f"hall-b{beta:g}", from_teacher(), dict(beta=beta)) for beta in (1.0, 5.0)]
    runs.append(("hall-b1+kdT4", from_teacher(), dict(beta=1.0, kd=1.0)))
    runs.append(("hall-fresh-b1+kdT4", Student(*fresh()), dict(beta=1.0, kd=1.0)))
    for name, net, kw in runs:
        t0 = time.time()
        acc = train_student(client, cfg, net, targets, epochs=epochs, **kw)
        emit(student=name, accuracy=acc, seconds=time.time() - t0)


if __name__ == "__main__":
    main()
