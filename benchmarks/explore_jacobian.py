"""Exploration (issue 2, point 2): Jacobian matching. docs/research.md finds the TVFL teacher's soft labels on its
training rows nearly one-hot, so they tell a student little beyond the label. Its input gradients are another
matter: how the teacher's output for the true class moves with each pixel of the active strip is a whole image of
information per row, and matching it (Srinivas and Fleuret, 2018, "Knowledge transfer with Jacobian matching";
Sobolev training, Czarnecki et al., 2017) is reported to help most when labelled rows are few, as mnist5k's 4,000.

The teacher is TVFL through the real clients (shift 2, 60 epochs), as in the other scripts. For every training row it
gives its logits and the gradient of its true-class logit with respect to the active strip, with the passive's
strip of the same row held fixed (eval mode, no augmentation: computed once). A fresh active-only student, 60
epochs, the default recipe, no augmentation, learns from the labels, the soft labels at T = 4 (weight 1) and
LAMBDA x the squared distance between its own true-class input gradient and the teacher's, each scaled to unit
length. The control: the same losses from a teacher that saw the active strip alone (a `local` network trained first),
which tells the passive's contribution from Jacobian matching's own.

Usage: python benchmarks/explore_jacobian.py OUT STRIP SEED [DEVICE]; lines are appended to OUT/STRIP-SEED.jsonl.
Environment: SCALE=x multiplies every epoch count (a smoke test's shorter runs).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from explore_function_matching import (
    jsonl_emitter,
    network,
    script_args,
    test_accuracy,
    train_epochs,
    train_teacher,
)

from apfed.config import make_config
from apfed.losses import distillation


def true_class_gradient(forward, x: torch.Tensor, y: torch.Tensor, create_graph: bool) -> tuple:
    """d(logit of the true class)/d(x), row by row (the rows are independent), flattened and scaled to unit length;
    and the logits."""
    x = x.detach().requires_grad_(True)
    logits = forward(x)
    (g,) = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), x, create_graph=create_graph)
    return F.normalize(g.flatten(1), dim=1), logits


def targets(client, rows: torch.Tensor, forward_for) -> tuple[torch.Tensor, torch.Tensor]:
    """A teacher's logits and unit true-class input gradients on ``rows``, 512 at a time; ``forward_for(idx)`` is
    the teacher's forward pass on those rows' active strip."""
    L = client.learner
    logits, grads = [], []
    for idx in rows.split(512):
        g, out = true_class_gradient(forward_for(idx), L.X[idx], L.y[idx].long(), create_graph=False)
        grads.append(g)
        logits.append(out.detach())
    return torch.cat(logits), torch.cat(grads)


def tvfl_targets(teacher, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The TVFL teacher's targets (eval mode), the passive's strip of each row held fixed."""
    client, passive = teacher
    L = client.learner
    L.modules.eval()
    passive.modules.eval()

    def forward_for(idx):
        with torch.no_grad():
            e = passive.modules["encoder"](passive.X[idx]).flatten(1)
        return lambda x: L.modules["fused_head"](torch.cat([L.modules["encoder"](x).flatten(1), e], 1))

    return targets(client, rows, forward_for)


def local_targets(net: torch.nn.Module, client, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same targets from an active-only network (the control)."""
    net.eval()
    return targets(client, rows, lambda idx: net)


def jacobian_student(client, cfg, epochs: int, targets, w: float, lam: float) -> float:
    """A fresh active-only network trained on the labels, ``w`` x soft labels at T = 4 and ``lam`` x Jacobian
    matching against ``targets`` (logits and unit gradients, indexed by row position); its mean test accuracy over
    the last 10 epochs."""
    L = client.learner
    pos = torch.full((len(L.y),), -1, dtype=torch.long, device=L.y.device)
    pos[client.train_idx] = torch.arange(len(client.train_idx), device=L.y.device)
    t_logits, t_grads = targets if targets is not None else (None, None)
    net = network(client.spec, cfg, cfg.seed + 99)
    torch.manual_seed(cfg.seed + 1)
    accs = []

    def loss_of(idx):
        net.train()
        y = L.y[idx].long()
        if lam > 0:
            g, logits = true_class_gradient(net, L.X[idx], y, create_graph=True)
            jac = ((g - t_grads[pos[idx]]) ** 2).sum(1).mean()
        else:
            logits, jac = net(L.X[idx]), 0.0
        loss = F.cross_entropy(logits, y) + lam * jac
        if w > 0:
            loss = loss + w * distillation(logits, t_logits[pos[idx]], 4.0)
        return loss

    train_epochs(client, cfg, net.parameters(), epochs, loss_of, lambda _: accs.append(test_accuracy(net, client)))
    return sum(accs[-10:]) / len(accs[-10:])


def main() -> None:
    out, strip, seed, device, ds, active = script_args()
    epochs = max(1, int(60 * float(os.environ.get("SCALE", 1))))
    emit = jsonl_emitter(out, strip, seed)
    base = make_config("default", method="tvfl", seed=seed, device=device, shift=2, epochs=epochs)
    t0 = time.time()
    teacher = train_teacher(ds, active, base)
    client = teacher[0]
    emit(student="(teacher)", accuracy=client.history[-1]["accuracy"], seconds=time.time() - t0)
    cfg = replace(base, method="local", shift=0)
    tr = client.train_idx
    tvfl = tvfl_targets(teacher, tr)
    # a teacher on the active strip alone, the control's: the recipe's local network, trained once
    t0 = time.time()
    local_net = network(client.spec, cfg, cfg.seed + 7)
    L = client.learner
    train_epochs(
        client,
        cfg,
        local_net.parameters(),
        epochs,
        lambda idx: (local_net.train(), F.cross_entropy(local_net(L.X[idx]), L.y[idx].long()))[1],
        gen=torch.Generator().manual_seed(cfg.seed + 7),
    )
    emit(student="(local teacher)", accuracy=test_accuracy(local_net, client), seconds=time.time() - t0)
    local = local_targets(local_net, client, tr)
    with torch.no_grad():
        agree = float((tvfl[1] * local[1]).sum(1).mean())
    emit(student="(gradient cosine, tvfl vs local teacher)", accuracy=agree, seconds=0.0)
    runs = [
        ("local", None, 0.0, 0.0),
        ("kdT4", tvfl, 1.0, 0.0),
        ("jac10", tvfl, 0.0, 10.0),
        ("kdT4-jac1", tvfl, 1.0, 1.0),
        ("kdT4-jac10", tvfl, 1.0, 10.0),
        ("kdT4-jac100", tvfl, 1.0, 100.0),
        ("control-kdT4-jac10", local, 1.0, 10.0),
    ]
    only = [o for o in os.environ.get("ONLY", "").split(",") if o]
    for name, targets, w, lam in runs:
        if only and name not in only:
            continue
        t0 = time.time()
        acc = jacobian_student(client, cfg, epochs, targets, w, lam)
        emit(student=name, accuracy=acc, seconds=time.time() - t0)


if __name__ == "__main__":
    main()
